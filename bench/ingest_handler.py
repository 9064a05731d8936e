"""Benchmark 1b, the webhook handler's own cost: CPU per request in-process, no gunicorn.

The same three handlers as benchmark 1 (bare Flask 204, the one-round-trip floor, the real
receiver with a signature secret), each called through WSGI in a process of its own against one
private Redis with append-only persistence, and timed by the thread's CPU clock: on a machine
shared with other work, CPU per request moves far less than requests/s do. Optionally the real
receiver of other source trees too (`--tree DIR`, e.g. an export of main), to measure a change
in the same run. Rounds are interleaved; medians are printed, with ratios to ours.

    .venv/bin/python -m bench.ingest_handler [--requests 3000] [--rounds 5] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"  # noqa: S105 (signs loopback test traffic only)


def inbound_environs(numbers: range, label: str) -> list[dict[str, Any]]:
    """Signed (sha256) inbound-SMS form webhooks as WSGI environs, one per number, each with a
    messageId of its own (`<label>-<pid>-<n>`): every one takes the accepted path. The signer
    and werkzeug are imported from `sys.path` as it is then (a `--tree` child's own first)."""
    import urllib.parse

    from werkzeug.test import EnvironBuilder

    from shared.settings import SignatureMethod
    from shared.signatures import sign

    at, run = int(time.time()), os.getpid()
    environs = []
    for n in numbers:
        params = {
            "msisdn": f"4474007{n % 100000:05d}", "to": "447700900100",
            "messageId": f"{label}-{run}-{n}", "text": "Hi, I am at the north entrance",
            "type": "text", "keyword": "HI", "message-timestamp": "2026-11-24 12:00:00",
            "api-key": "sandbox-key", "timestamp": str(at), "nonce": f"n{n}",
        }
        params["sig"] = sign(params, SECRET, SignatureMethod.SHA256)
        environs.append(EnvironBuilder(
            path="/webhooks/inbound-sms", method="POST", data=urllib.parse.urlencode(params),
            content_type="application/x-www-form-urlencoded").get_environ())
    return environs


def _child(app_name: str, tree: str, requests: int) -> None:
    """Runs in a process of its own: builds one app from `tree`, times `requests` webhooks."""
    sys.path.insert(0, tree)


    from shared.settings import Settings

    if app_name == "ours":
        from web.app import create_app

        app = create_app(Settings.from_env(os.environ)).wsgi_app
    else:
        import redis
        from flask import Flask, request

        flask_app = Flask("baseline")
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        push = client.register_script("return redis.call('LPUSH', KEYS[1], ARGV[1])")

        def handler() -> tuple[str, int]:
            if app_name == "floor":
                push(keys=["bench:floor"], args=[request.get_data()])
            return "", 204

        flask_app.add_url_rule("/webhooks/inbound-sms", "inbound", handler, methods=["POST"])
        app = flask_app.wsgi_app
        if app_name == "floor-wsgi":
            app = _raw_floor(push)
    warm, environs = 200, inbound_environs(range(requests + 200), "bench")
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                       ) -> Callable[[bytes], object]:
        statuses.append(status)
        return lambda _data: None

    def call(env: dict[str, object]) -> None:
        b"".join(app(env, start_response))

    for env in environs[:warm]:
        call(env)
    cpu, wall = time.thread_time(), time.perf_counter()
    for env in environs[warm:]:
        call(env)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    bad = sum(1 for s in statuses if not s.startswith("2"))
    print(json.dumps({"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6,
                      "non_2xx": bad}))


def _raw_floor(push: Any) -> Callable[..., Any]:
    """The floor's round trip without Flask: a plain WSGI callable that reads the body by its
    Content-Length, pushes it and answers 204. Not the issue's floor (that is Flask and one
    round trip); the cost of the round trip alone, next to a receiver that skips Flask too."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        push(keys=["bench:floor"], args=[body])
        start_response("204 NO CONTENT", [])
        return []

    return app


def _measure_one(label: str, app_name: str, tree: Path, requests: int,
                 env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", app_name, str(tree),
         str(requests)],
        capture_output=True, text=True, env=env, check=True, cwd=tree,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    if figures["non_2xx"]:
        raise RuntimeError(f"{label}: {figures['non_2xx']:.0f} answers were not 2xx")
    return figures


def measure(requests: int, rounds: int, trees: list[Path] | None = None
            ) -> dict[str, dict[str, float]]:
    """Median CPU and wall microseconds per request of each handler (and of ours in `trees`)."""
    from devtools.redis_server import RedisServer

    subjects = [("bare", "bare", ROOT), ("floor", "floor", ROOT),
                ("floor-wsgi", "floor-wsgi", ROOT), ("ours", "ours", ROOT)]
    subjects += [(f"ours@{tree.name}", "ours", tree) for tree in trees or []]
    samples: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in subjects}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SMSPROXY_", "VONAGE_"))},
            "REDIS_URL": server.url, "VONAGE_SIGNATURE_SECRET": SECRET,
            "VONAGE_SIGNATURE_METHOD": "sha256",
            "SMSPROXY_API_TOKENS": "bench-0123456789abcdef0123456789abcdef",
            "SMSPROXY_LOG_LEVEL": "WARNING", "PYTHONPATH": "",
        }
        for _ in range(rounds):
            for label, app_name, tree in subjects:
                samples[label].append(_measure_one(label, app_name, tree, requests, env))
    figures: dict[str, dict[str, float]] = {}
    for label, runs in samples.items():
        figures[label] = {
            "cpu_us": statistics.median(r["cpu_us"] for r in runs),
            "wall_us": statistics.median(r["wall_us"] for r in runs),
            "cpu_min": min(r["cpu_us"] for r in runs), "cpu_max": max(r["cpu_us"] for r in runs),
        }
    return figures


def report(figures: dict[str, dict[str, float]], requests: int, rounds: int) -> None:
    print(f"webhook handler in-process (WSGI, no gunicorn), CPU per request, {requests} "
          f"requests x {rounds} interleaved rounds")
    ours = figures["ours"]["cpu_us"]
    for label, f in figures.items():
        print(f"  {label:18} CPU {f['cpu_us']:6.1f} us (range {f['cpu_min']:.0f}-"
              f"{f['cpu_max']:.0f})  wall {f['wall_us']:6.1f} us")
    print(f"  ratio floor/ours {figures['floor']['cpu_us'] / ours:.2f} (the issue's floor, "
          f"Flask and one round trip), floor-wsgi/ours "
          f"{figures['floor-wsgi']['cpu_us'] / ours:.2f} (the round trip without Flask)")
    print(f"  ratio bare/ours {figures['bare']['cpu_us'] / ours:.2f} (CPU per request, inverted: "
          "the requests/s ratio were this the only cost)")
    for label, f in figures.items():
        if label.startswith("ours@"):
            print(f"  ratio {label}/ours {f['cpu_us'] / ours:.2f} (above 1: ours costs less)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another source tree whose receiver to measure too (repeatable)")
    options = parser.parse_args(argv)
    report(measure(options.requests, options.rounds, options.tree), options.requests,
           options.rounds)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
