"""The broker-relevant scenarios again with RabbitMQ as the broker (Redis staying the store):
workers SIGKILLed holding deliveries, and RabbitMQ unreachable, in one stream.

The machine's RabbitMQ, in a vhost of our own, reached by web and workers through a relay
(tests/rabbitmq.py) that the test cuts: the shared RabbitMQ itself is never stopped. Skipped,
saying why, where no RabbitMQ runs. Smaller streams than the Redis scenarios (100 texts), to
keep the RabbitMQ runs of the suite short: what differs is the broker's redelivery, which a
quorum queue does at once when the consumer's connection closes, with no visibility timeout.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rabbitmq import TcpProxy, private_vhost, unacknowledged
from tests.reliability.harness import (
    LostMessages,
    check_exactly_once,
    exited,
    open_conversations,
    reliability_stack,
    run_stream,
    summary,
)

pytestmark = pytest.mark.reliability

CONVERSATIONS = 10
TEXTS = 100
KILLS = 2
OUTAGE_SECONDS = 4.0


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    """(the vhost's URL, a relay to RabbitMQ) for one scenario."""
    with private_vhost("reliability") as url:
        relay = TcpProxy()
        try:
            yield url, relay
        finally:
            relay.close()


def _inbound_codes(stack) -> list[int | None]:
    return [a.get("status_code") for w in stack.sandbox.client.webhooks() if w["kind"] == "inbound"
            for a in w["attempts"]]


def test_worker_kills_and_rabbitmq_unreachable_lose_and_double_nothing(tmp_path, rabbitmq):
    """One stream, three faults (one stack: the RabbitMQ runs of the suite stay short): a worker
    SIGKILLed holding deliveries, twice, each replaced; then every connection to RabbitMQ cut
    and new ones refused for 4 s. Webhooks answer 503 during the cut and are retried by the
    sandbox; workers reconnect; every text is relayed exactly once."""
    url, relay = rabbitmq
    began = time.monotonic()
    env = {"CELERY_BROKER_URL": relay.url(url)}
    # 300 ms per Vonage call: kills find sends in flight. beat runs the outbox sweeper.
    with reliability_stack(tmp_path, workers=2, env=env, sandbox={"latency_ms": 300},
                           beat=True) as stack:
        conversations = open_conversations(stack, CONVERSATIONS)
        held_at_kill: list[int] = []
        victims: list[str] = []

        def kill(k: int) -> None:
            victim = stack.worker_names[0]
            victims.append(victim)
            os.kill(stack.processes[victim].pid, signal.SIGSTOP)
            # RabbitMQ keeps handing the frozen consumer deliveries up to its prefetch; kill
            # once some are held (the live worker acknowledges its own in milliseconds)
            deadline = time.monotonic() + 10
            held = unacknowledged(url)
            while held == 0 and time.monotonic() < deadline:
                held = unacknowledged(url)
            held_at_kill.append(held)
            stack.stop_process(victim, signal.SIGKILL)
            stack.start_worker(f"worker-r{k}")  # the replacement, as a supervisor would

        def outage() -> None:
            relay.cut()
            time.sleep(OUTAGE_SECONDS)  # the fault's length, not a wait for anything
            relay.restore()

        faults = [*((2 + 4 * k, f"SIGKILL #{k + 1}", lambda k=k: kill(k)) for k in range(KILLS)),
                  (11, f"RabbitMQ unreachable {OUTAGE_SECONDS:g} s", outage)]
        stream = run_stream(stack, conversations, TEXTS, rate=8, faults=faults)
        outcome = check_exactly_once(stack, stream, timeout=60, audit_wait=30)
        codes = _inbound_codes(stack)
        line = summary("rabbitmq-kills-and-outage", outcome,
                       f"{KILLS}xSIGKILL(worker) + RabbitMQ cut {OUTAGE_SECONDS:g} s",
                       time.monotonic() - began,
                       unacked_at_kill="/".join(map(str, held_at_kill)),
                       webhook_503=codes.count(503), waited_s=f"{outcome.waited:.1f}")
        print(outcome.details())
        # every process but the victims rode out the cut (workers reconnect on their own)
        others_exited = {n: c for n, c in exited(stack).items() if n not in victims}
    assert not stream.errors, stream.errors
    assert not others_exited, f"{line}\nexited: {others_exited}"
    assert all(held > 0 for held in held_at_kill), held_at_kill  # each kill took deliveries
    assert codes.count(503) > 0, line  # the outage was seen, and answered 503
    assert not any(c is not None and c >= 500 and c != 503 for c in codes), codes
    assert not outcome.duplicated and not outcome.unexpected, f"{line}\n{outcome.details()}"
    if not outcome.ok or outcome.undelivered:
        raise LostMessages(f"{line}\n{outcome.details()}")
