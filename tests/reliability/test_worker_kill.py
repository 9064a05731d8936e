"""Scenario 1: a worker process SIGKILLed mid-stream, three times, each time replaced.

Each victim is killed the way a supervisor kills a hung worker: it stops answering (SIGSTOP)
and is SIGKILLed once Redis shows it holding a delivery it never read (the BRPOP that every idle
kombu consumer keeps outstanding). That is the worst moment of a kill, made deterministic, so
the outcome does not depend on where a plain SIGKILL happens to land.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from tests.reliability.harness import (
    LostMessages,
    check_exactly_once,
    open_conversations,
    popped_but_unread,
    reliability_stack,
    run_stream,
    summary,
)

pytestmark = pytest.mark.reliability

# The broker hands a dead worker's messages out again after the visibility timeout, found by a
# restore sweep every 5 s (workers/celery_app.py). 6 s here, the least the settings accept
# beside the harness's 3 s multi-part wait (at most half of it); the scenario's length is
# mostly this timer. RELIABILITY_VISIBILITY_TIMEOUT=30 measures the default.
VISIBILITY = int(os.environ.get("RELIABILITY_VISIBILITY_TIMEOUT", "6"))
OUTBOX_SWEEP = 10  # workers/schedule.py STRANDED_SWEEP_SECONDS
SWEEP = 5
KILLS = 3




def test_sigkill_of_a_worker_three_times_loses_and_doubles_nothing(tmp_path):
    began = time.monotonic()
    # Kills far enough apart that each one's stranded messages are back before the next.
    spacing = VISIBILITY + SWEEP + 3
    duration = 3 + (KILLS - 1) * spacing + 4
    total = 150
    env = {"SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY)}
    # 300 ms per Vonage call, a slow round trip: kills often find sends in flight.
    # beat runs the sweeper, which re-publishes what a kill took out of the broker for good
    with reliability_stack(tmp_path, workers=2, env=env, sandbox={"latency_ms": 300},
                           beat=True) as stack:
        conversations = open_conversations(stack, 15)
        victims: list[str] = []

        in_transit: list[int] = []
        assert stack.redis is not None
        broker = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        restored: list[tuple[int, float]] = []
        watchers: list[threading.Thread] = []

        def kill(k: int) -> None:
            victim = stack.worker_names[0]
            victims.append(victim)
            os.kill(stack.processes[victim].pid, signal.SIGSTOP)
            deadline = time.monotonic() + 6
            while not popped_but_unread(stack) and time.monotonic() < deadline:
                time.sleep(0.1)
            in_transit.append(popped_but_unread(stack))
            tags = set(broker.hkeys("unacked"))
            stack.stop_process(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            stack.start_worker(f"worker-r{k}")  # the replacement, as a supervisor would
            watcher = threading.Thread(target=_watch, args=(broker, tags, killed_at, restored),
                                       daemon=True)
            watcher.start()
            watchers.append(watcher)

        faults = [(3 + k * spacing, f"SIGKILL #{k + 1}", lambda k=k: kill(k))
                  for k in range(KILLS)]
        stream = run_stream(stack, conversations, total, total / duration, faults)
        # a job lost with a kill (kombu's BRPOP hole) comes back through the outbox: due after
        # twice the visibility timeout plus the longest backoff, found by a 10 s sweep
        outbox_recovery = 2 * VISIBILITY + VISIBILITY / 3 + OUTBOX_SWEEP + 10
        outcome = check_exactly_once(stack, stream, timeout=outbox_recovery,
                                     audit_wait=outbox_recovery)
        for watcher in watchers:
            watcher.join(timeout=VISIBILITY + SWEEP + 30)
        broker.close()
        recoveries = [r for _, r in restored]
        line = summary(
            "sigkill-worker-x3", outcome, f"{KILLS}xSIGKILL(worker)", time.monotonic() - began,
            visibility_timeout=f"{VISIBILITY}s",
            stranded="/".join(str(n) for n, _ in restored),
            recovery_s="/".join(f"{r:.1f}" for r in recoveries),
            popped_unread_at_kill="/".join(map(str, in_transit)),
        )
        print(outcome.details())
    assert not stream.errors, stream.errors
    assert not outcome.duplicated and not outcome.unexpected, f"{line}\n{outcome.details()}"
    # every stranded message that came back did so within the visibility timeout plus a sweep
    assert all(r <= VISIBILITY + SWEEP + 5 for r in recoveries), recoveries
    if not outcome.ok or outcome.undelivered:
        raise LostMessages(f"{line}\n{outcome.details()}")


def _watch(broker, tags: set[str], killed_at: float, out: list) -> None:
    """Recovery of one kill: seconds from the kill until the broker had handed out again every
    delivery the dead worker held (its entries gone from kombu's `unacked` hash), and how many
    there were (those still held 2 s after the kill: the live worker acks its own in ms)."""
    stranded: set[str] = set()
    deadline = killed_at + VISIBILITY + SWEEP + 30
    while time.monotonic() < deadline:
        held = tags & set(broker.hkeys("unacked"))
        if time.monotonic() - killed_at >= 2 and not stranded:
            stranded = held
        if time.monotonic() - killed_at >= 2 and not held:
            out.append((len(stranded), time.monotonic() - killed_at if stranded else 0.0))
            return
        time.sleep(0.2)
    out.append((len(stranded), float("inf")))
