"""Benchmark 2, end-to-end relay: webhook to the send recorded at the sandbox, with 150 ms of
provider latency, versus a Celery no-op task drained by the same worker configuration.

Both runs use one worker process with the product's worker settings (thread pool, prefetch) and
the same private Redis. The relay run sends N texts from handsets across many live conversations
through the sandbox (signed webhooks, gunicorn, the worker, the SDK over HTTPS) with the rate limit
out of the way; the baseline enqueues N no-op tasks. Reports messages/s, the ratio, webhook-to-send
p50/p99, lost and duplicated counts, and each process's peak RSS.

    .venv/bin/python -m bench.relay_e2e [--messages 600] [--conversations 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import redis

from bench.common import InboundPoster, open_conversations, tree_peak_rss_bytes
from devtools.stack import ROOT, Stack, StackConfig

LATENCY_MS = 150


def run_relay(messages: int, conversations: int, tmp: Path) -> dict[str, float]:
    config = StackConfig(
        state_dir=tmp / "relay", pool_targets="GB=3",
        sandbox_options={"latency_ms": LATENCY_MS},
        # throughput is measured: no send rate, and no per-conversation caps (which a run of
        # --messages over few --conversations would reach)
        extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": "0",
                   "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
                   "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0"},
    )
    with Stack(config) as stack:
        sandbox = stack.sandbox
        assert sandbox is not None
        pairs = open_conversations(stack, conversations)
        sandbox.client.set_faults(latency_ms=LATENCY_MS)
        before = len(sandbox.client.sms_log())
        poster = InboundPoster(stack)
        posted_at = poster.posted_at
        ids = [f"bench-{n}" for n in range(messages)]

        def post(n: int) -> None:
            sender, proxy = pairs[n % conversations]
            poster.post(sender, proxy, ids[n], f"m{n}")

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(post, range(messages)))
        deadline = time.monotonic() + 300
        while len(sandbox.client.sms_log()) - before < messages:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        time.sleep(2)  # let any duplicate surface
        sends = [s for s in sandbox.client.sms_log()[before:]
                 if s["client_ref"].startswith("relay-")]
        refs = Counter(s["client_ref"] for s in sends)
        latencies = sorted(
            _ts(s["sent_at"]) - posted_at[s["client_ref"][len("relay-"):]]
            for s in sends if s["client_ref"][len("relay-"):] in posted_at
        )
        rss = {name: tree_peak_rss_bytes(p.pid) / 2**20 for name, p in stack.processes.items()}
    return {
        "rate": messages / elapsed,
        "lost": sum(1 for i in ids if refs[f"relay-{i}"] == 0),
        "duplicated": sum(1 for count in refs.values() if count > 1),
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "rss_web_mib": rss.get("web", 0.0), "rss_worker_mib": rss.get("worker1", 0.0),
    }


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run_noop(messages: int, tmp: Path, worker_args: tuple[str, ...]) -> dict[str, float]:
    from devtools.redis_server import RedisServer

    with RedisServer(tmp / "noop-redis") as server:
        env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(ROOT),
               "SMSPROXY_LOG_LEVEL": "WARNING"}
        worker = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker", "--loglevel",
             "WARNING", "-Q", "conversations", *worker_args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            sys.path.insert(0, str(ROOT))
            os.environ["REDIS_URL"] = server.url
            from bench.noop_app import app

            client = redis.Redis.from_url(server.url)
            app.send_task("bench.noop", args=[0], queue="conversations")  # warm up
            while int(client.get("bench:noop:done") or 0) < 1:
                time.sleep(0.05)
            started = time.monotonic()
            with app.producer_or_acquire() as producer:
                for n in range(messages):
                    app.send_task("bench.noop", args=[n], queue="conversations",
                                  producer=producer)
            while int(client.get("bench:noop:done") or 0) < messages + 1:
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            rss = tree_peak_rss_bytes(worker.pid) / 2**20
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return {"rate": messages / elapsed, "rss_worker_mib": rss}


def measure(messages: int, conversations: int, rounds: int) -> dict[str, float]:
    relay, noop = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            noop.append(run_noop(messages, Path(tmp) / f"n{r}", ()))
            relay.append(run_relay(messages, conversations, Path(tmp) / f"r{r}"))
    figures = {
        "noop_rate": statistics.median(x["rate"] for x in noop),
        "relay_rate": statistics.median(x["rate"] for x in relay),
        "p50_ms": statistics.median(x["p50_ms"] for x in relay),
        "p99_ms": statistics.median(x["p99_ms"] for x in relay),
        "lost": sum(x["lost"] for x in relay),
        "duplicated": sum(x["duplicated"] for x in relay),
        "rss_web_mib": max(x["rss_web_mib"] for x in relay),
        "rss_worker_mib": max(x["rss_worker_mib"] for x in relay),
        "rss_noop_worker_mib": max(x["rss_worker_mib"] for x in noop),
    }
    figures["ratio"] = figures["relay_rate"] / figures["noop_rate"]
    return figures


def report(f: dict[str, float], messages: int) -> None:
    print(f"end-to-end relay, {messages} messages, provider latency {LATENCY_MS} ms, "
          "one worker process (threads, product settings)")
    print(f"  no-op task baseline   {f['noop_rate']:7.1f} tasks/s    "
          f"worker peak RSS {f['rss_noop_worker_mib']:.0f} MiB")
    print(f"  relay                 {f['relay_rate']:7.1f} messages/s  ratio {f['ratio']:.2f} "
          "(goal >= 0.5)")
    print(f"  webhook-to-send p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms; "
          f"lost {f['lost']:.0f}, duplicated {f['duplicated']:.0f} (must be 0)")
    print(f"  peak RSS: web {f['rss_web_mib']:.0f} MiB, worker {f['rss_worker_mib']:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args(argv)
    report(measure(options.messages, options.conversations, options.rounds), options.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
