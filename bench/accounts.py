"""Benchmark: sends through one Vonage account versus two, against the sandbox holding each API
key to Vonage's 30 requests per second (status 1 "Throttled" beyond it).

One stack (gunicorn, one Celery worker process, Redis, the sandbox over HTTPS with the real
SDK) with two accounts and a pool of four numbers, two bought on each. The baseline owes N
sends from the first account's numbers only; the measured run owes N sends spread over all
four numbers, so over both accounts. Each run publishes its N `send_sms` jobs at once and the
worker drains them under the product's per-key rate buckets (SMSPROXY_SEND_RATE_PER_SECOND=30);
the rate is taken from the sandbox's own clock: sustained, between the 10th and the 90th
percentile send (while the backlog lasts), and first to last. Reports sends/s of each run,
their ratio (goal >= 1.9), how often a send waited for its bucket, Vonage throttling met
(status 1 answers, which the per-key buckets should keep at 0), lost and duplicated sends.

    .venv/bin/python -m bench.accounts [--messages 600] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools.stack import Stack, StackConfig
from shared.domain import MessageKind, OutboundSms
from shared.jobs import TaskName
from shared.settings import Settings
from shared.wiring import Services
from web.queue import Publisher

SECOND = ("bench-second-key", "bench-second-secret", "bench-second-signature-secret")
VONAGE_RATE_PER_KEY = 30
WAITS = "smsproxy.outbound.throttled"
# Two worker processes in both runs: the accounts' limits are what is measured, so the workers
# must have room beyond two keys' worth (one process under a loaded, shared machine tops out
# near 45 sends/s, below 2 x 30).
WORKERS = 2


def _sends(stack: Stack, senders: list[str], messages: int, tag: str) -> dict[str, float]:
    """Owe `messages` sends round-robin over `senders`, publish them all, wait for them at the
    sandbox; the accepted rate by the sandbox's timestamps."""
    sandbox = stack.sandbox
    assert sandbox is not None
    settings = Settings.from_env(stack.env)
    services = Services.from_settings(settings)
    publisher = Publisher(settings)
    before = int(sandbox.client.stats()["sms_sent"])
    throttled_before = _throttled(sandbox.client.stats())
    waits_before = services.counters.snapshot().get(WAITS, 0)
    ids = [f"{tag}-{n}" for n in range(messages)]
    now = time.time()
    for n, outbound_id in enumerate(ids):
        services.messages.owe(OutboundSms(
            outbound_id, None, MessageKind.RELAY, senders[n % len(senders)],
            f"4474007{n:05d}", f"bench {n}", created_at=now), in_trail=False)
    for outbound_id in ids:
        publisher.publish(TaskName.SEND_SMS, outbound_id)
    deadline = time.monotonic() + 600
    # the count, not the log: the log grows with every send, and serving it over and over
    # would take the CPU the sends are measured on
    while int(sandbox.client.stats()["sms_sent"]) - before < messages:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1)  # let a duplicate surface
    sent = sandbox.client.sms_log()[before:]
    refs = Counter(s["client_ref"] for s in sent)
    stamps = sorted(datetime.fromisoformat(s["sent_at"]).timestamp() for s in sent)
    per_account = Counter(s["account"] for s in sent)
    low, high = len(stamps) // 10, len(stamps) * 9 // 10
    return {
        # sustained: between the 10th and the 90th percentile send, while the backlog lasts
        "rate": (high - low) / (stamps[high] - stamps[low]) if high > low else 0.0,
        "whole_rate": (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0,
        "lost": sum(1 for i in ids if refs[i] == 0),
        "duplicated": sum(1 for count in refs.values() if count > 1),
        "throttled": _throttled(sandbox.client.stats()) - throttled_before,
        # how often a send was told to wait for its bucket: each a task run and a re-publish
        "waits_per_send": (services.counters.snapshot().get(WAITS, 0) - waits_before)
        / max(1, len(sent)),
        "accounts": len(per_account),
    }


def _throttled(stats: dict[str, Any]) -> int:
    return sum(int(a["sms_throttled"]) for a in stats["accounts"].values())


def run(messages: int, tmp: Path, round_: int) -> tuple[dict[str, float], dict[str, float]]:
    config = StackConfig(
        state_dir=tmp / f"accounts{round_}", pool_targets="GB=4", workers=WORKERS,
        extra_accounts=(SECOND,),
        sandbox_options={"rate_per_key": VONAGE_RATE_PER_KEY},
        extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": str(VONAGE_RATE_PER_KEY)},
    )
    with Stack(config) as stack:
        assert stack.sandbox is not None
        stack.provision_pool(expected=4)
        owner = {n["msisdn"]: n["account"] for n in stack.sandbox.client.owned_numbers()}
        first = sorted(m for m, key in owner.items() if key == "sandbox-key")
        both = sorted(owner)
        assert len(first) == 2 and len(both) == 4, owner
        one = _sends(stack, first, messages, f"one{round_}")
        two = _sends(stack, both, messages, f"two{round_}")
    return one, two


def measure(messages: int, rounds: int) -> dict[str, float]:
    ones, twos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            one, two = run(messages, Path(tmp), r)
            ones.append(one)
            twos.append(two)
    figures = {
        "one_rate": statistics.median(x["rate"] for x in ones),
        "two_rate": statistics.median(x["rate"] for x in twos),
        "throttled": sum(x["throttled"] for x in ones + twos),
        "lost": sum(x["lost"] for x in ones + twos),
        "duplicated": sum(x["duplicated"] for x in ones + twos),
        "two_accounts_used": min(x["accounts"] for x in twos),
        "one_waits": statistics.median(x["waits_per_send"] for x in ones),
        "two_waits": statistics.median(x["waits_per_send"] for x in twos),
        "one_whole": statistics.median(x["whole_rate"] for x in ones),
        "two_whole": statistics.median(x["whole_rate"] for x in twos),
        "rounds": rounds,
    }
    figures["ratio"] = figures["two_rate"] / figures["one_rate"]
    return figures


def report(f: dict[str, float], messages: int) -> None:
    print(f"sends through Vonage accounts, {messages} per run, sandbox limit "
          f"{VONAGE_RATE_PER_KEY}/s per API key, {WORKERS} worker processes, median of "
          f"{f['rounds']:.0f} round(s)")
    print(f"  one account (baseline)  {f['one_rate']:6.1f} sends/s sustained "
          f"({f['one_whole']:.1f} first to last), {f['one_waits']:.2f} rate waits per send")
    print(f"  two accounts            {f['two_rate']:6.1f} sends/s sustained "
          f"({f['two_whole']:.1f} first to last), {f['two_waits']:.2f} rate waits per send")
    print(f"  ratio {f['ratio']:.2f} (goal >= 1.9)")
    print(f"  Vonage throttling met {f['throttled']:.0f}; lost {f['lost']:.0f}, duplicated "
          f"{f['duplicated']:.0f} (must be 0); accounts used by the second run "
          f"{f['two_accounts_used']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args(argv)
    report(measure(options.messages, options.rounds), options.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
