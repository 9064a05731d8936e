"""Which worker pool keeps sends in flight when every Vonage call takes 150 ms?

Runs the real stack (gunicorn, Celery, Redis, the sandbox with 150 ms latency on every API call,
the rate limit out of the way), relays N messages through it once per worker configuration, and
prints messages/s as a ratio to the baseline (prefork, 2 processes: Celery's default on 2 cores).

    .venv/bin/python -m bench.worker_pool [--messages 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devtools.stack import Stack, StackConfig

CONFIGS: dict[str, tuple[str, ...]] = {
    "prefork -c2 (baseline)": ("--pool", "prefork", "--concurrency", "2"),
    "threads -c32 prefetch 1": ("--pool", "threads", "--concurrency", "32",
                                "--prefetch-multiplier", "1"),
    "threads -c32 prefetch 4 (default)": ("--pool", "threads", "--concurrency", "32"),
    "threads -c64 prefetch 4": ("--pool", "threads", "--concurrency", "64"),
}


def run(label: str, args: tuple[str, ...], messages: int, conversations: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(
            state_dir=Path(tmp), pool_targets="GB=3", worker_args=args,
            sandbox_options={"latency_ms": 150},
            extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": "0"},
        )
        with Stack(config) as stack:
            stack.provision_pool(expected=3)
            sandbox = stack.sandbox
            assert sandbox is not None
            pairs = []
            for i in range(conversations):
                a, b = f"4474005{i:05d}", f"4474006{i:05d}"
                created = stack.api("POST", "/v1/conversations", {
                    "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}]}).json()
                body = stack.wait_for_status(created["id"], "active", timeout=120)
                pairs.append((a, body["participants"][0]["proxy_number"][1:]))
            sandbox.client.wait_until_idle(timeout=60)
            while len(sandbox.client.sms_log()) < 2 * conversations:
                time.sleep(0.2)
            start_count = len(sandbox.client.sms_log())
            started = time.monotonic()
            for n in range(messages):
                a, proxy = pairs[n % conversations]
                sandbox.client.send_from_handset(a, proxy, f"bench {n}")
            while len(sandbox.client.sms_log()) - start_count < messages:
                if time.monotonic() - started > 300:
                    raise TimeoutError(f"{label}: not done in 300 s")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
    rate = messages / elapsed
    print(f"  {label:<36} {rate:7.1f} messages/s ({elapsed:.1f} s)", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    print(f"worker pools, {options.messages} relayed messages, sandbox latency 150 ms")
    results: dict[str, list[float]] = {label: [] for label in CONFIGS}
    for _ in range(options.rounds):
        for label, args in CONFIGS.items():
            results[label].append(run(label, args, options.messages, options.conversations))
    baseline = statistics.median(results["prefork -c2 (baseline)"])
    print("\nmedian messages/s and ratio to the baseline:")
    for label, rates in results.items():
        median = statistics.median(rates)
        print(f"  {label:<36} {median:7.1f}  x{median / baseline:.1f}")


if __name__ == "__main__":
    main()
