"""Benchmark 2, relay throughput per worker process against its concurrency limit: webhook to
the send recorded at the sandbox, with 150 ms of provider latency, versus the same worker
configuration draining tasks that only wait 150 ms (the limit: sends in flight / latency).

Every run uses one worker process with the product's worker settings (pool, concurrency,
prefetch) plus any `--worker-arg`, each with a private Redis. The relay run posts N signed
webhooks to web across many live conversations (gunicorn, the worker, the SDK over HTTPS to the
sandbox, the rate limit out of the way); the limit run enqueues N tasks that sleep 150 ms and
nothing else, so it measures what the pool and Celery's consumer allow when a send costs
nothing of its own (concurrency / latency is the arithmetic ceiling: 32 / 0.15 s = 213/s). A
no-op drain is reported too (Celery's own per-task cost). Rounds interleave the three.
Reports messages/s, the ratio to the limit, webhook-to-send p50/p99 (a burst: queueing
included), lost and duplicated counts, and each process's peak RSS.

    .venv/bin/python -m bench.relay_e2e [--messages 600] [--conversations 60] [--rounds 3]
        [--worker-arg=--pool=gevent --worker-arg=--concurrency=64]
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
from typing import Any

import redis

from bench.common import InboundPoster, open_conversations, tree_peak_rss_bytes
from bench.scale_out import CLOCK_TICKS, cpu_seconds
from devtools.stack import ROOT, Stack, StackConfig
from shared.settings import Settings
from workers.celery_app import make_celery

LATENCY_MS = 150


def run_relay(messages: int, conversations: int, tmp: Path,
              worker_args: tuple[str, ...] = ()) -> dict[str, float]:
    config = StackConfig(
        state_dir=tmp / "relay", pool_targets="GB=3", worker_args=worker_args,
        sandbox_options={"latency_ms": LATENCY_MS},
        # throughput is measured: no send rate, and no per-conversation caps (which a run of
        # --messages over few --conversations would reach)
        extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": "0",
                   "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
                   "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0",
                   # the setup polls each new conversation until it is active
                   "SMSPROXY_API_RATE_LIMIT": "1000/second;100000/minute"},
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

        assert stack.redis is not None
        store = redis.Redis.from_url(stack.redis.url)
        pids = {name: process.pid for name, process in stack.processes.items()}
        pids["sandbox"] = sandbox.process.pid
        stats = store.info("stats")
        commands = int(stats["total_commands_processed"])
        reads = int(stats["total_reads_processed"])
        cpu = {name: cpu_seconds([pid]) for name, pid in pids.items()}
        redis_cpu = _redis_cpu(store)
        busy = _machine_busy()
        poster_cpu = time.process_time()  # this process: the 8 posting threads, mostly
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(post, range(messages)))
        deadline = time.monotonic() + 300
        # the sandbox's count of sends, not its whole log: encoding the growing log ten times a
        # second was a visible share of the sandbox's CPU (a profile's 13 %), on the stack's cores
        while sandbox.client.stats()["sms_sent"] - before < messages:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        time.sleep(2)  # let any duplicate surface, and the receipts be recorded
        # What each message cost, whatever the machine's noise: the worker's CPU time, and of
        # all parts (web, worker, kombu; receipts included) the Redis commands (those run inside
        # scripts and transactions too) and the socket reads Redis made (a pipeline, a
        # transaction or a script arrives in one: a read is a round trip). Less the INFO call.
        cpu = {name: cpu_seconds([pid]) - cpu[name] for name, pid in pids.items()}
        redis_cpu = _redis_cpu(store) - redis_cpu
        busy_cores = (_machine_busy() - busy) / (elapsed + 2)
        poster_cpu = time.process_time() - poster_cpu
        stats = store.info("stats")
        commands = int(stats["total_commands_processed"]) - commands - 1
        reads = int(stats["total_reads_processed"]) - reads - 1
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
        "cpu_ms": cpu["worker1"] * 1000 / messages, "commands": commands / messages,
        # every process of the stack (the sandbox's TLS server and receipts, web, Redis) shares
        # the machine's cores with the worker: what each cost per message, over the burst
        "cpu_web_ms": cpu.get("web", 0.0) * 1000 / messages,
        "cpu_sandbox_ms": cpu.get("sandbox", 0.0) * 1000 / messages,
        "cpu_redis_ms": redis_cpu * 1000 / messages,
        "cpu_stack_ms": (sum(cpu.values()) + redis_cpu) * 1000 / messages,
        "cpu_poster_ms": poster_cpu * 1000 / messages,
        "busy_cores": busy_cores,
        "round_trips": reads / messages,
    }


def _redis_cpu(store: redis.Redis) -> float:
    """Redis's own CPU seconds so far (INFO cpu: its main thread and the rest)."""
    info = store.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait),
    whoever spent them: with other work on the machine, how much of it the burst had."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run_noop(messages: int, tmp: Path, worker_args: tuple[str, ...],
             sleep: float | None = None) -> dict[str, float]:
    """Drain `messages` no-op tasks, or with `sleep` tasks that wait that long each."""
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
            # a client app of this run's Redis (the imported bench.noop_app is bound to the
            # first run's)
            app = make_celery(Settings.from_env({"REDIS_URL": server.url}))
            client = redis.Redis.from_url(server.url)
            name, arg = ("bench.noop", None) if sleep is None else ("bench.sleep_send", sleep)
            app.send_task(name, args=[arg or 0], queue="conversations")  # warm up
            while int(client.get("bench:noop:done") or 0) < 1:
                time.sleep(0.05)
            started = time.monotonic()
            with app.producer_or_acquire() as producer:
                for n in range(messages):
                    app.send_task(name, args=[arg if arg is not None else n],
                                  queue="conversations", producer=producer)
            while int(client.get("bench:noop:done") or 0) < messages + 1:
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            rss = tree_peak_rss_bytes(worker.pid) / 2**20
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return {"rate": messages / elapsed, "rss_worker_mib": rss}


def concurrency_of(worker_args: tuple[str, ...]) -> int:
    """The worker's concurrency: the last -c/--concurrency argument, else the product's setting."""
    found = int(os.environ.get("SMSPROXY_WORKER_CONCURRENCY", "32"))
    for n, arg in enumerate(worker_args):
        if arg.startswith("--concurrency="):
            found = int(arg.split("=", 1)[1])
        elif arg in ("-c", "--concurrency") and n + 1 < len(worker_args):
            found = int(worker_args[n + 1])
    return found


def measure(messages: int, conversations: int, rounds: int,
            worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    relay, noop, limit = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            limit.append(run_noop(messages, Path(tmp) / f"s{r}", worker_args,
                                  sleep=LATENCY_MS / 1000))
            relay.append(run_relay(messages, conversations, Path(tmp) / f"r{r}", worker_args))
            noop.append(run_noop(messages, Path(tmp) / f"n{r}", worker_args))
            print(f"  round {r + 1}: limit {limit[-1]['rate']:.1f}/s, relay "
                  f"{relay[-1]['rate']:.1f}/s, no-op {noop[-1]['rate']:.1f}/s", flush=True)
    figures: dict[str, Any] = {
        "concurrency": concurrency_of(worker_args),
        "limit_rate": statistics.median(x["rate"] for x in limit),
        "limit_rates": [x["rate"] for x in limit],
        "relay_rates": [x["rate"] for x in relay],
        "noop_rate": statistics.median(x["rate"] for x in noop),
        "relay_rate": statistics.median(x["rate"] for x in relay),
        "p50_ms": statistics.median(x["p50_ms"] for x in relay),
        "p99_ms": statistics.median(x["p99_ms"] for x in relay),
        "lost": sum(x["lost"] for x in relay),
        "duplicated": sum(x["duplicated"] for x in relay),
        "rss_web_mib": max(x["rss_web_mib"] for x in relay),
        "rss_worker_mib": max(x["rss_worker_mib"] for x in relay),
        "rss_noop_worker_mib": max(x["rss_worker_mib"] for x in noop),
        "cpu_ms": statistics.median(x["cpu_ms"] for x in relay),
        "commands": statistics.median(x["commands"] for x in relay),
        "round_trips": statistics.median(x["round_trips"] for x in relay),
        **{key: statistics.median(x[key] for x in relay)
           for key in ("cpu_web_ms", "cpu_sandbox_ms", "cpu_redis_ms", "cpu_stack_ms",
                       "cpu_poster_ms", "busy_cores")},
    }
    figures["ratio"] = figures["relay_rate"] / figures["limit_rate"]
    figures["noop_ratio"] = figures["relay_rate"] / figures["noop_rate"]
    figures["ceiling"] = figures["concurrency"] / (LATENCY_MS / 1000)
    return figures


def report(f: dict[str, Any], messages: int, worker_args: tuple[str, ...] = ()) -> None:
    extra = f", {' '.join(worker_args)}" if worker_args else ""
    print(f"end-to-end relay, {messages} messages, provider latency {LATENCY_MS} ms, "
          f"one worker process (product settings{extra})")
    print(f"  concurrency limit     {f['limit_rate']:7.1f} tasks/s    (150 ms sleep-sends, same "
          f"pool; arithmetic ceiling {f['concurrency']} / 0.15 s = {f['ceiling']:.0f}/s)")
    print(f"  no-op task drain      {f['noop_rate']:7.1f} tasks/s    "
          f"worker peak RSS {f['rss_noop_worker_mib']:.0f} MiB")
    print(f"  relay                 {f['relay_rate']:7.1f} messages/s  ratio {f['ratio']:.2f} "
          f"to the limit (goal >= 0.8); {f['noop_ratio']:.2f} to the no-op drain")
    print("  per round: limit " + ", ".join(f"{x:.0f}" for x in f["limit_rates"])
          + "; relay " + ", ".join(f"{x:.0f}" for x in f["relay_rates"]))
    print(f"  webhook-to-send p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms; "
          f"lost {f['lost']:.0f}, duplicated {f['duplicated']:.0f} (must be 0)")
    print(f"  per message (its receipt included): worker CPU {f['cpu_ms']:.2f} ms; Redis round "
          f"trips {f['round_trips']:.1f}, commands {f['commands']:.1f} (web, worker and kombu)")
    print(f"  CPU per message, by process: worker {f['cpu_ms']:.2f} ms, web "
          f"{f['cpu_web_ms']:.2f}, sandbox {f['cpu_sandbox_ms']:.2f}, Redis "
          f"{f['cpu_redis_ms']:.2f}; the whole stack {f['cpu_stack_ms']:.2f} ms (the poster "
          f"{f['cpu_poster_ms']:.2f}); the machine "
          f"(any process) {f['busy_cores']:.2f} of {os.cpu_count()} cores busy")
    print(f"  peak RSS: web {f['rss_web_mib']:.0f} MiB, worker {f['rss_worker_mib']:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="extra argument to every worker, e.g. --worker-arg=--pool=gevent")
    options = parser.parse_args(argv)
    args = tuple(options.worker_arg)
    report(measure(options.messages, options.conversations, options.rounds, args),
           options.messages, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
