"""Helpers shared by the benchmarks: private Redis servers, timing, medians, ratios, tables.

Every benchmark reports a figure as a ratio to a baseline measured in the same run: the machine
is shared and noisy, so absolute numbers move from run to run while ratios mostly do not.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import redis
import requests

from devtools.redis_server import RedisServer
from devtools.stack import Stack
from shared.settings import Settings, SignatureMethod
from shared.signatures import sign


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


def open_conversations(stack: Stack, count: int) -> list[tuple[str, str]]:
    """`count` active conversations with their intros sent, made with no provider latency (the
    sandbox's faults apply to every API call): (a participant, the proxy they text) of each."""
    sandbox = stack.sandbox
    assert sandbox is not None
    sandbox.client.set_faults(latency_ms=0)
    stack.provision_pool(expected=3)

    def create(i: int) -> tuple[str, str]:
        a, b = f"4474008{i:05d}", f"4474009{i:05d}"
        created = stack.api("POST", "/v1/conversations", {
            "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}]}).json()
        body = stack.wait_for_status(created["id"], "active", timeout=120)
        return a, body["participants"][0]["proxy_number"][1:]

    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(create, range(count)))
    while len(sandbox.client.sms_log()) < 2 * count:
        time.sleep(0.2)
    return pairs


class InboundPoster:
    """Plays Vonage: signed inbound webhooks straight to web, as fast as it takes them (the
    sandbox's handset API would be the bottleneck otherwise), noting when each was posted."""

    def __init__(self, stack: Stack) -> None:
        self._url = f"{stack.web_url}/webhooks/inbound-sms"
        self._secret = stack.config.signature_secret or ""
        self._method = SignatureMethod(stack.config.signature_method)
        self._session = requests.Session()
        self.posted_at: dict[str, float] = {}

    def post(self, sender: str, proxy: str, message_id: str, text: str) -> None:
        params = {"msisdn": sender, "to": proxy, "messageId": message_id, "text": text,
                  "type": "text", "timestamp": str(int(time.time())), "nonce": message_id}
        params["sig"] = sign(params, self._secret, self._method)
        self.posted_at[message_id] = time.time()
        self._session.post(self._url, data=params, timeout=10).raise_for_status()
