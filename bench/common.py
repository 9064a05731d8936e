"""Helpers shared by the benchmarks: private Redis servers, timing, medians, ratios, tables.

Every benchmark reports a figure as a ratio to a baseline measured in the same run: the machine
is shared and noisy, so absolute numbers move from run to run while ratios mostly do not.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from devtools.redis_server import RedisServer
from shared.settings import Settings


@contextmanager
def private_redis(*, appendonly: bool = False) -> Iterator[tuple[RedisServer, redis.Redis]]:
    """A fresh redis-server of our own on a free loopback port (never the system one on 6379),
    with a decoded client; both are gone when the block ends.

    Append-only is off by default: benchmarks measure lookups and memory, not fsync, and
    writing millions of keys to an AOF only slows the population down.
    """
    with tempfile.TemporaryDirectory(prefix="smsproxy-bench-") as tmp:
        server = RedisServer(Path(tmp), appendonly=appendonly).start()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            yield server, client
        finally:
            client.close()
            server.stop()


def bench_settings(**env: str) -> Settings:
    """Settings as the workers would read them, with the defaults for everything else."""
    base = {
        "SMSPROXY_API_TOKENS": "bench-token-0123456789abcdef0123456789",
        "VONAGE_API_KEY": "bench-key",
        "VONAGE_API_SECRET": "bench-secret",
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
    }
    base.update(env)
    return Settings.from_env(base)


def server_pid(client: redis.Redis) -> int:
    """The redis-server's pid, as it reports it (so no private attribute of RedisServer)."""
    return int(client.info("server")["process_id"])


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of a process (VmHWM in /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def children(pid: int) -> list[int]:
    """A process's direct children (gunicorn's workers), from /proc."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in listed.split()]


def tree_peak_rss_bytes(pid: int) -> int:
    """Peak RSS of a process and its direct children, added up (those still alive)."""
    total = 0
    for process in [pid, *children(pid)]:
        try:
            total += peak_rss_bytes(process)
        except (OSError, RuntimeError):
            continue  # gone meanwhile
    return total


def used_memory(client: redis.Redis) -> int:
    """Bytes Redis's allocator holds for data and overhead (`INFO memory` used_memory)."""
    return int(client.info("memory")["used_memory"])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(figure: float, baseline: float) -> float:
    """figure / baseline; infinity when the baseline is zero (never silently 0)."""
    return figure / baseline if baseline else float("inf")


def mib(size: float) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pastes straight into docs/performance.md), under a title line."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print()
    print(title)
    print()
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    print()
