"""Benchmark 1c, the ingest soak: the receiver under gunicorn at a fixed webhook rate for many
minutes, to show that nothing drifts with time (latency, memory, errors).

One gunicorn (gunicorn.conf.py, the worker class asked for: by default the one gunicorn.conf.py
picks) in front of its own Redis, fed signed inbound webhooks at a fixed rate by the open-loop
client of benchmark 1 (`bench/webhook_ingest.py`), one window after another; every webhook is a
new one. Between windows the store is emptied (no worker drains the queue here, and a queue
growing by a gigabyte would measure Redis, not the receiver). Each window prints its p50/p99,
its non-2xx answers, and the web processes' resident memory; the ratios are against the first
window, the baseline of the same run.

    .venv/bin/python -m bench.ingest_soak [--minutes 10] [--rate 1000] [--worker-class gevent]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.common import children, mib, print_table, ratio
from bench.webhook_ingest import (
    configured_worker_class,
    fixed_rate,
    receiver_env,
    start_gunicorn,
)
from devtools.redis_server import RedisServer


@dataclass
class Window:
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    web_rss: int  # bytes, master and workers, at the window's end


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS), 0 for a process gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def soak(windows: int, seconds: int, rate: int, worker_class: str, workers: int = 2
         ) -> list[Window]:
    results: list[Window] = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as redis_server:
        env = receiver_env(redis_server.url)
        store = redis.Redis.from_url(redis_server.url)
        server = start_gunicorn("web.wsgi:app", env, worker_class, workers)
        try:
            for window in range(windows):
                # ids of their own per window: every webhook takes the full path
                load = fixed_rate(server.port, rate, seconds, first=window * rate * (seconds + 2))
                pids = [server.process.pid, *children(server.process.pid)]
                results.append(Window(load.p50_ms, load.p99_ms, load.errors, rate * seconds,
                                      sum(rss_bytes(pid) for pid in pids)))
                store.flushall()
        finally:
            server.stop()
            store.close()
    return results


def report(results: list[Window], seconds: int, rate: int, worker_class: str) -> None:
    first = results[0]
    rows = [
        (n + 1, f"{w.p50_ms:.2f}", f"{w.p99_ms:.2f}", f"{ratio(w.p99_ms, first.p99_ms):.2f}",
         w.errors, mib(w.web_rss), f"{ratio(w.web_rss, first.web_rss):.3f}")
        for n, w in enumerate(results)
    ]
    print_table(
        f"ingest soak: gunicorn {worker_class} (gunicorn.conf.py), {rate:,} signed webhooks/s, "
        f"{len(results)} windows of {seconds} s",
        ["window", "p50 ms", "p99 ms", "p99 / first", "non-2xx", "web RSS", "RSS / first"],
        rows,
    )
    total = sum(w.requests for w in results)
    errors = sum(w.errors for w in results)
    worst = max(w.p99_ms for w in results)
    print(f"  {total:,} webhooks, non-2xx {errors}; worst window p99 {worst:.2f} ms "
          f"({ratio(worst, first.p99_ms):.2f}x the first; goal p99 < 25 ms); web RSS last/first "
          f"{ratio(results[-1].web_rss, first.web_rss):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window-seconds", type=int, default=60)
    parser.add_argument("--rate", type=int, default=1000, help="webhooks per second")
    parser.add_argument("--worker-class", default=configured_worker_class(),
                        help="GUNICORN_WORKER_CLASS (default: gunicorn.conf.py's)")
    parser.add_argument("--workers", type=int, default=2, help="GUNICORN_WORKERS")
    options = parser.parse_args(argv)
    windows = max(1, round(options.minutes * 60 / options.window_seconds))
    results = soak(windows, options.window_seconds, options.rate, options.worker_class,
                   options.workers)
    report(results, options.window_seconds, options.rate, options.worker_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
