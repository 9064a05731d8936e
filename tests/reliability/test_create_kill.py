"""Scenario 8: conversations requested while the worker that took one of their creates dies.

The worker is frozen (SIGSTOP) with its BRPOP outstanding, so the first create job sent meets
kombu's BRPOP hole: Redis hands it to a socket nobody reads. The worker is then SIGKILLed and
replaced. That job is gone from the broker for good; only the outbox brings it back. Every
conversation must become active, each with exactly its two intros.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
import redis

from tests.reliability.harness import popped_but_unread, reliability_stack

pytestmark = pytest.mark.reliability

# the least the settings accept beside the harness's 3 s multi-part wait (at most half of it):
# the lost create comes back after twice this and a third, so the scenario's length is this timer
VISIBILITY = 6
OUTBOX_SWEEP = 10  # workers/schedule.py STRANDED_SWEEP_SECONDS
CREATES = 20
TRIES = 3  # freezes until one catches a create job in the BRPOP hole


def test_a_create_lost_with_its_worker_still_opens_its_conversation(tmp_path):
    began = time.monotonic()
    env = {"SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY)}
    with reliability_stack(tmp_path, workers=1, env=env, beat=True) as stack:
        assert stack.redis is not None
        broker = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        ids: list[str] = []
        caught = 0
        for attempt in range(TRIES):
            victim = stack.worker_names[0]
            os.kill(stack.processes[victim].pid, signal.SIGSTOP)
            queued_before = broker.llen("conversations")
            batch = []
            for i in range(CREATES):
                n = attempt * CREATES + i
                response = stack.api("POST", "/v1/conversations", {"participants": [
                    {"number": f"+4474003{n:05d}"}, {"number": f"+4474004{n:05d}"}]})
                assert response.status_code == 202, response.text
                batch.append(response.json()["id"])
            ids += batch
            deadline = time.monotonic() + 6
            while not popped_but_unread(stack) and time.monotonic() < deadline:
                time.sleep(0.1)
            # the frozen worker's BRPOP took a create (not a beat job) when one is missing
            caught = queued_before + CREATES - broker.llen("conversations")
            stack.stop_process(victim, signal.SIGKILL)
            stack.start_worker(f"worker-r{attempt}")
            if caught:
                break
        # the lost job is due again after 2 x visibility timeout + the longest backoff, and a
        # sweep finds it within 10 s
        recovery = 2 * VISIBILITY + VISIBILITY / 3 + OUTBOX_SWEEP + 30
        statuses = {i: stack.wait_for_status(i, "active", timeout=recovery)["status"]
                    for i in ids}
        deadline = time.monotonic() + 30
        assert stack.sandbox is not None
        while True:
            intros = Counter(str(s.get("client_ref")) for s in stack.sandbox.client.sms_log()
                             if str(s.get("client_ref")).startswith("intro-"))
            if len(intros) >= 2 * len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        broker.close()
        active = sum(s == "active" for s in statuses.values())
        line = (f"RELIABILITY create-lost-with-worker: conversations={len(ids)} "
                f"create_jobs_lost_in_brpop={caught} active={active} "
                f"intros={sum(intros.values())} duplicated_intros="
                f"{sum(c - 1 for c in intros.values() if c > 1)} "
                f"runtime={time.monotonic() - began:.1f}s")
        print(line)
    assert caught == 1, f"no freeze caught a create in the BRPOP hole: {line}"
    assert set(statuses.values()) == {"active"}, line
    assert len(intros) == 2 * len(ids) and all(c == 1 for c in intros.values()), line
