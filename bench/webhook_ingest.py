"""Benchmark 1, webhook ingest: signed inbound webhooks at the receiver versus a bare handler.

Both run under gunicorn with the Procfile's web config (`gunicorn.conf.py`), one after the other,
interleaved over rounds; load comes from a separate process (wrk when installed, else a Python
asyncio client). Reports requests/s and its ratio to the bare handler, latency percentiles, the
p50/p99 at a fixed 1,000 requests/s (open loop), and peak RSS of the web processes.

    .venv/bin/python -m bench.webhook_ingest [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import tree_peak_rss_bytes
from devtools.ports import free_port
from devtools.redis_server import RedisServer
from devtools.stack import ROOT
from shared.settings import SignatureMethod
from shared.signatures import sign

SECRET = "bench-secret"  # noqa: S105 (signs loopback test traffic only)
METHOD = SignatureMethod.SHA256


def signed_body(n: int, at: int) -> str:
    params = {
        "msisdn": f"4474007{n % 100000:05d}", "to": "447700900100", "messageId": f"bench-{n}",
        "text": "Hi, I am at the north entrance", "type": "text", "keyword": "HI",
        "message-timestamp": "2026-11-24 12:00:00", "api-key": "sandbox-key",
        "timestamp": str(at), "nonce": f"n{n}",
    }
    params["sig"] = sign(params, SECRET, METHOD)
    return urllib.parse.urlencode(params)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> int:
        """Stop it; returns the peak RSS in KiB summed over master and workers."""
        peak = tree_peak_rss_bytes(self.process.pid) // 1024
        self.process.terminate()
        self.process.wait(timeout=20)
        return peak


def start_gunicorn(app: str, env: dict[str, str]) -> Server:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", app, "--config", str(ROOT / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/webhooks/inbound-sms", timeout=1)
            return Server(process, port)
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{app} did not start")


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(port: int, seconds: int, bodies: Path) -> LoadResult:
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_THREADS": "2"}
    out = subprocess.run(  # noqa: S603
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s",
         str(ROOT / "bench" / "wrk_bodies.lua"), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    return LoadResult(rps, _wrk_percentile(out, "50"), _wrk_percentile(out, "99"), errors)


def _wrk_percentile(out: str, which: str) -> float:
    found = re.search(rf"\s{which}%\s+([\d.]+)(us|ms|s)", out)
    if not found:
        return float("nan")
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _open_loop(port: int, rate: int, seconds: int, first: int) -> tuple[list[float], int]:
    """Send at a fixed rate whatever the answers; latency counts from the scheduled time."""
    total = rate * seconds
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0
    at = int(time.time())

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            scheduled, body = await queue.get()
            writer.write(
                b"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.monotonic() - scheduled)
            if not status.startswith(b"HTTP/1.1 2"):
                errors += 1
            queue.task_done()

    workers = [asyncio.create_task(connection()) for _ in range(64)]
    start = time.monotonic() + 0.2
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, signed_body(first + i, at).encode()))
    await queue.join()
    for task in workers:
        task.cancel()
    return latencies, errors


def fixed_rate(port: int, rate: int, seconds: int, first: int) -> LoadResult:
    latencies, errors = asyncio.run(_open_loop(port, rate, seconds, first))
    ordered = sorted(latencies)
    return LoadResult(
        rps=rate,
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=ordered[int(len(ordered) * 0.99)] * 1000,
        errors=errors,
    )


def measure(seconds: int, rounds: int) -> dict[str, float]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the throughput runs: apt-get install wrk")
    results: dict[str, list[LoadResult]] = {"bare": [], "ours": []}
    rss: dict[str, int] = {"bare": 0, "ours": 0}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as redis_server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SMSPROXY_", "VONAGE_"))},
            "REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT),
            "VONAGE_SIGNATURE_SECRET": SECRET, "VONAGE_SIGNATURE_METHOD": METHOD.value,
            "SMSPROXY_API_TOKENS": "bench-0123456789abcdef0123456789abcdef",
            "SMSPROXY_LOG_LEVEL": "WARNING",
        }
        bodies = Path(tmp) / "bodies.txt"
        at = int(time.time())
        with bodies.open("w") as out:
            # enough unique messageIds for every round at well above the expected rate
            for n in range(12000 * seconds * rounds):
                out.write(signed_body(n, at) + "\n")
        for _ in range(rounds):
            for label, app in (("bare", "bench.bare_app:app"), ("ours", "web.wsgi:app")):
                server = start_gunicorn(app, env)
                results[label].append(run_wrk(server.port, seconds, bodies))
                rss[label] = max(rss[label], server.stop())
        server = start_gunicorn("web.wsgi:app", env)
        steady = fixed_rate(server.port, 1000, seconds, first=10_000_000)
        rss["ours"] = max(rss["ours"], server.stop())

    bare = statistics.median(r.rps for r in results["bare"])
    ours = statistics.median(r.rps for r in results["ours"])
    figures = {
        "bare_rps": bare, "ours_rps": ours, "ratio": ours / bare,
        "ours_p50_ms": statistics.median(r.p50_ms for r in results["ours"]),
        "ours_p99_ms": statistics.median(r.p99_ms for r in results["ours"]),
        "bare_p50_ms": statistics.median(r.p50_ms for r in results["bare"]),
        "bare_p99_ms": statistics.median(r.p99_ms for r in results["bare"]),
        "errors": sum(r.errors for r in results["ours"]) + steady.errors,
        "fixed_1000_p50_ms": steady.p50_ms, "fixed_1000_p99_ms": steady.p99_ms,
        "rss_bare_mib": rss["bare"] / 1024, "rss_ours_mib": rss["ours"] / 1024,
    }
    return figures


def report(f: dict[str, float]) -> None:
    print("webhook ingest (gunicorn gthread 2x8, wrk -t2 -c32, signed sha256 webhooks)")
    print(f"  bare Flask 204      {f['bare_rps']:8.0f} req/s  p50 {f['bare_p50_ms']:.2f} ms"
          f"  p99 {f['bare_p99_ms']:.2f} ms  peak RSS {f['rss_bare_mib']:.0f} MiB")
    print(f"  smsproxy webhook    {f['ours_rps']:8.0f} req/s  p50 {f['ours_p50_ms']:.2f} ms"
          f"  p99 {f['ours_p99_ms']:.2f} ms  peak RSS {f['rss_ours_mib']:.0f} MiB")
    print(f"  ratio {f['ratio']:.2f} (goal >= 0.6); non-2xx answers: {f['errors']:.0f}")
    print(f"  at a fixed 1,000 req/s: p50 {f['fixed_1000_p50_ms']:.2f} ms, "
          f"p99 {f['fixed_1000_p99_ms']:.2f} ms (goal p99 < 25 ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    report(measure(options.seconds, options.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
