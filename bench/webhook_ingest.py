"""Benchmark 1, webhook ingest: signed inbound webhooks at the receiver versus two baselines.

The baselines: a bare Flask handler answering 204 (`bench/bare_app.py`), and the floor of a
durable acknowledgement, a bare Flask handler that answers only after one Redis round trip to a
Redis with the receiver's persistence settings (`bench/floor_app.py`). All three run under
gunicorn with the Procfile's web config (`gunicorn.conf.py`), with each worker class asked for
(GUNICORN_WORKER_CLASS), one after the other and interleaved over rounds; load comes from a
separate process (wrk). Reports requests/s and the ratios ours / floor and ours / bare (the
median of each round's ratio, with its range over rounds: the machine is shared), latency
percentiles, the p50/p99 at a fixed 1,000 requests/s (open loop; the floor's and ours, each
round, after a second at that rate that is not counted), and peak RSS.

    .venv/bin/python -m bench.webhook_ingest [--seconds 6] [--rounds 3]
        [--worker-classes gthread,gevent] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from bench.common import children, tree_peak_rss_bytes
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


def receiver_env(redis_url: str) -> dict[str, str]:
    """The environment gunicorn runs the apps in: this one's, less any proxy, Vonage or
    gunicorn setting of the caller's, with the benchmark's store, secret and token."""
    return {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("SMSPROXY_", "VONAGE_", "GUNICORN_"))},
        "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
        "VONAGE_SIGNATURE_SECRET": SECRET, "VONAGE_SIGNATURE_METHOD": METHOD.value,
        "SMSPROXY_API_TOKENS": "bench-0123456789abcdef0123456789abcdef",
        "SMSPROXY_LOG_LEVEL": "WARNING",
    }


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


def start_gunicorn(app: str, env: dict[str, str], worker_class: str = "gthread",
                   workers: int = 2) -> Server:
    """gunicorn with gunicorn.conf.py, its worker class and count set as operators set them."""
    port = free_port()
    extra = {"GUNICORN_WORKER_CLASS": worker_class, "GUNICORN_WORKERS": str(workers)}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", app, "--config", str(ROOT / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env={**env, **extra},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90  # generous: a shared machine under load starts it slowly
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
    requests: int = 0
    # CPU seconds per request (user + system) of the gunicorn processes, and of redis-server:
    # far steadier than requests/s on a shared machine, where other work takes the cores
    web_cpu_us: float = float("nan")
    redis_cpu_us: float = float("nan")
    # the busiest worker's share of the workers' CPU: gunicorn's workers accept greedily from
    # one socket, and one of them may take most of wrk's long-lived connections (1/workers:
    # even)
    busiest_share: float = float("nan")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its direct children (gunicorn's workers)."""
    return sum(cpu_seconds(process) for process in [pid, *children(pid)])


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measured_wrk(server: Server, store: redis.Redis, seconds: int, bodies: Path,
                 connections: int) -> LoadResult:
    """A wrk run, with the CPU the web processes and Redis spent on it per request."""
    workers = children(server.process.pid)
    each0 = [cpu_seconds(w) for w in workers]
    web0, redis0 = tree_cpu_seconds(server.process.pid), redis_cpu_seconds(store)
    result = run_wrk(server.port, seconds, bodies, connections)
    web1, redis1 = tree_cpu_seconds(server.process.pid), redis_cpu_seconds(store)
    spent = [cpu_seconds(w) - before for w, before in zip(workers, each0, strict=True)]
    if sum(spent) > 0:
        result.busiest_share = max(spent) / sum(spent)
    if result.requests:
        result.web_cpu_us = (web1 - web0) / result.requests * 1e6
        result.redis_cpu_us = (redis1 - redis0) / result.requests * 1e6
    return result


def run_wrk(port: int, seconds: int, bodies: Path, connections: int = 32) -> LoadResult:
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_THREADS": "2"}
    out = subprocess.run(  # noqa: S603
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(ROOT / "bench" / "wrk_bodies.lua"), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return LoadResult(rps, _wrk_percentile(out, "50"), _wrk_percentile(out, "99"), errors,
                      requests_done)


def _wrk_percentile(out: str, which: str) -> float:
    found = re.search(rf"\s{which}%\s+([\d.]+)(us|ms|s)", out)
    if not found:
        return float("nan")
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


OPEN_LOOP_CONNECTIONS = 64
# The fixed-rate run first sends this long at its rate without counting the latencies: a
# gunicorn worker's first requests open its Redis connections and the client's 64 connections
# arrive at once (measured on a quiet machine: p99 17-40 ms in the first second, 4-11 ms in the
# seconds after). Its errors are counted.
WARMUP_SECONDS = 1.0


async def _open_loop(port: int, rate: int, seconds: int, first: int,
                     warmup: float = WARMUP_SECONDS) -> tuple[list[float], int]:
    """Send at a fixed rate whatever the answers; latency counts from the scheduled time.

    Returns the latencies of the requests scheduled after `warmup` seconds, and the errors of
    all of them."""
    uncounted = int(rate * warmup)
    total = uncounted + rate * seconds
    queue: asyncio.Queue[tuple[int, float, bytes]] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0
    at = int(time.time())

    async def connection() -> None:
        nonlocal errors
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            index, scheduled, body = await queue.get()
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
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
                if index >= uncounted:
                    latencies.append(time.monotonic() - scheduled)
                if not status.startswith(b"HTTP/1.1 2"):
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                # the server closed the connection: an error, and a new connection next time
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
            finally:
                queue.task_done()

    workers = [asyncio.create_task(connection()) for _ in range(OPEN_LOOP_CONNECTIONS)]
    start = time.monotonic() + 0.2
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, scheduled, signed_body(first + i, at).encode()))
    try:
        # bounded: a server that stops answering ends the run, counted as errors
        await asyncio.wait_for(queue.join(), timeout=seconds + warmup + 30)
    except TimeoutError:
        errors += queue.qsize()
    for task in workers:
        task.cancel()
    return latencies, errors


def fixed_rate(port: int, rate: int, seconds: int, first: int) -> LoadResult:
    latencies, errors = asyncio.run(_open_loop(port, rate, seconds, first))
    ordered = sorted(latencies) or [float("nan")]
    return LoadResult(
        rps=rate,
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=ordered[int(len(ordered) * 0.99)] * 1000,
        errors=errors,
    )


APPS = {"bare": "bench.bare_app:app", "floor": "bench.floor_app:app", "ours": "web.wsgi:app"}
# The apps also measured at the fixed rate, each round on the server of its closed-loop run: the
# goal is ours's p99; the floor's, in the same minute, shows what the machine allowed then.
FIXED_RATE_APPS = ("floor", "ours")


def configured_worker_class() -> str:
    """The worker class the Procfile runs (gunicorn.conf.py's, GUNICORN_WORKER_CLASS unset): the
    cross-class ratio is ours under each class to bare under this one."""
    return str(runpy.run_path(str(ROOT / "gunicorn.conf.py"))["DEFAULT_WORKER_CLASS"])


def write_bodies(path: Path, count: int, first: int) -> None:
    """Pre-signed webhooks, each with a new messageId, signed now (fresh timestamps)."""
    at = int(time.time())
    with path.open("w") as out:
        for n in range(first, first + count):
            out.write(signed_body(n, at) + "\n")


def measure(
    seconds: int, rounds: int, worker_classes: list[str], rate: int = 1000,
    connections: int = 32, bodies_per_run: int | None = None, workers: int = 2,
) -> dict[str, dict[str, float]]:
    """Figures per worker class: requests/s, latency and RSS of each app, and the ratios."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the throughput runs: apt-get install wrk")
    runs: dict[tuple[str, str], list[LoadResult]] = {}
    rss: dict[tuple[str, str], int] = {}
    fixed: dict[tuple[str, str], list[LoadResult]] = {}
    # enough unique messageIds for a run well above the expected rate
    per_run = bodies_per_run or 16000 * seconds
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as redis_server:
        env = receiver_env(redis_server.url)
        store = redis.Redis.from_url(redis_server.url)
        bodies = Path(tmp) / "bodies.txt"
        for round_number in range(rounds):
            # new ids and timestamps each round, and an empty store for each run: every
            # webhook is a new one (a duplicate takes a shorter path)
            write_bodies(bodies, per_run, first=round_number * per_run)
            for worker_class in worker_classes:
                for label, app in APPS.items():
                    store.flushall()
                    server = start_gunicorn(app, env, worker_class, workers)
                    runs.setdefault((worker_class, label), []).append(
                        measured_wrk(server, store, seconds, bodies, connections))
                    key = (worker_class, label)
                    if label in FIXED_RATE_APPS:
                        # new ids again, an empty store: every webhook takes the full path
                        store.flushall()
                        fixed.setdefault(key, []).append(fixed_rate(
                            server.port, rate, seconds,
                            first=10_000_000 + round_number * per_run))
                    rss[key] = max(rss.get(key, 0), server.stop())
        store.close()

    figures: dict[str, dict[str, float]] = {}
    configured = configured_worker_class()
    default = configured if configured in worker_classes else worker_classes[0]
    for worker_class in worker_classes:
        f: dict[str, float] = {"rounds": rounds, "rate": rate, "workers": workers}
        for label in APPS:
            results = runs[(worker_class, label)]
            f[f"{label}_rps"] = statistics.median(r.rps for r in results)
            f[f"{label}_p50_ms"] = statistics.median(r.p50_ms for r in results)
            f[f"{label}_p99_ms"] = statistics.median(r.p99_ms for r in results)
            f[f"{label}_rss_mib"] = rss[(worker_class, label)] / 1024
            f[f"{label}_web_cpu_us"] = statistics.median(r.web_cpu_us for r in results)
            f[f"{label}_redis_cpu_us"] = statistics.median(r.redis_cpu_us for r in results)
            f[f"{label}_busiest"] = max(r.busiest_share for r in results)
        ours = [r.rps for r in runs[(worker_class, "ours")]]
        # each round's ratio (its runs were seconds apart), then the median and range
        for name, base in (("floor", runs[(worker_class, "floor")]),
                           ("bare", runs[(worker_class, "bare")]),
                           ("bare_default", runs[(default, "bare")])):
            ratios = [o / b.rps for o, b in zip(ours, base, strict=True)]
            f[f"ours_to_{name}"] = statistics.median(ratios)
            f[f"ours_to_{name}_min"], f[f"ours_to_{name}_max"] = min(ratios), max(ratios)
        floor_ratios = [fl.rps / b.rps for fl, b in zip(
            runs[(worker_class, "floor")], runs[(worker_class, "bare")], strict=True)]
        f["floor_to_bare"] = statistics.median(floor_ratios)
        # what requests/s would be were the web processes' CPU the only limit (a host whose
        # cores were free): the ratio of CPU per request, the inverse way round
        f["cpu_floor_to_ours"] = f["floor_web_cpu_us"] / f["ours_web_cpu_us"]
        f["cpu_bare_to_ours"] = f["bare_web_cpu_us"] / f["ours_web_cpu_us"]
        f["errors"] = sum(r.errors for r in runs[(worker_class, "ours")]) \
            + sum(r.errors for r in fixed[(worker_class, "ours")])
        for label in FIXED_RATE_APPS:
            at_rate = fixed[(worker_class, label)]
            prefix = "fixed" if label == "ours" else f"fixed_{label}"
            f[f"{prefix}_p50_ms"] = statistics.median(r.p50_ms for r in at_rate)
            f[f"{prefix}_p99_ms"] = statistics.median(r.p99_ms for r in at_rate)
            f[f"{prefix}_p99_min_ms"] = min(r.p99_ms for r in at_rate)
            f[f"{prefix}_p99_max_ms"] = max(r.p99_ms for r in at_rate)
        f["fixed_floor_errors"] = sum(r.errors for r in fixed[(worker_class, "floor")])
        figures[worker_class] = f
    return figures


def report(figures: dict[str, dict[str, float]], connections: int = 32) -> None:
    configured = configured_worker_class()
    default = configured if configured in figures else next(iter(figures))
    for worker_class, f in figures.items():
        print(f"webhook ingest, gunicorn {worker_class} x {f['workers']:.0f} (gunicorn.conf.py), "
              f"wrk -t2 -c{connections}, signed sha256 webhooks, medians of "
              f"{f['rounds']:.0f} rounds")
        for label, title in (("bare", "bare Flask 204"), ("floor", "floor: 1 Redis trip"),
                             ("ours", "smsproxy webhook")):
            print(f"  {title:20} {f[f'{label}_rps']:8.0f} req/s  p50 {f[f'{label}_p50_ms']:6.2f} ms"
                  f"  p99 {f[f'{label}_p99_ms']:6.2f} ms  CPU/request web "
                  f"{f[f'{label}_web_cpu_us']:4.0f} us, redis {f[f'{label}_redis_cpu_us']:3.0f} us"
                  f"  peak RSS {f[f'{label}_rss_mib']:.0f} MiB  busiest worker <= "
                  f"{f[f'{label}_busiest']:.0%}")
        print(f"  ratio ours/floor {f['ours_to_floor']:.2f} (range {f['ours_to_floor_min']:.2f}-"
              f"{f['ours_to_floor_max']:.2f}; goal >= 0.85); floor/bare {f['floor_to_bare']:.2f}")
        print(f"  ratio ours/bare {f['ours_to_bare']:.2f} (range {f['ours_to_bare_min']:.2f}-"
              f"{f['ours_to_bare_max']:.2f}; stretch >= 0.6)")
        print(f"  CPU per request, web processes: floor/ours {f['cpu_floor_to_ours']:.2f}, "
              f"bare/ours {f['cpu_bare_to_ours']:.2f} (requests/s ratios if web's CPU were "
              "the only limit)")
        if worker_class != default:
            print(f"  ratio ours/bare-{default} {f['ours_to_bare_default']:.2f} (range "
                  f"{f['ours_to_bare_default_min']:.2f}-{f['ours_to_bare_default_max']:.2f})")
        print(f"  at a fixed {f['rate']:,.0f} req/s (medians of {f['rounds']:.0f} rounds, "
              f"after {WARMUP_SECONDS:g} s not counted): ours p50 {f['fixed_p50_ms']:.2f} ms, "
              f"p99 {f['fixed_p99_ms']:.2f} ms (range {f['fixed_p99_min_ms']:.2f}-"
              f"{f['fixed_p99_max_ms']:.2f}; goal p99 < 25 ms); floor p50 "
              f"{f['fixed_floor_p50_ms']:.2f} ms, p99 {f['fixed_floor_p99_ms']:.2f} ms (range "
              f"{f['fixed_floor_p99_min_ms']:.2f}-{f['fixed_floor_p99_max_ms']:.2f}, non-2xx "
              f"{f['fixed_floor_errors']:.0f})")
        print(f"  ours's non-2xx answers: {f['errors']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker-classes", default="gthread,gevent",
                        help="comma-separated gunicorn worker classes (GUNICORN_WORKER_CLASS)")
    parser.add_argument("--rate", type=int, default=1000, help="the fixed-rate run's req/s")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn worker processes (GUNICORN_WORKERS; the Procfile's is 2)")
    options = parser.parse_args(argv)
    classes = [c.strip() for c in options.worker_classes.split(",") if c.strip()]
    report(measure(options.seconds, options.rounds, classes, options.rate, options.connections,
                   workers=options.workers), options.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
