"""Scenarios 2-6: one fault each, injected into a stream of texts across 15 conversations,
then every text must have been relayed exactly once and the audit trail must agree."""

from __future__ import annotations

import time

import pytest

from tests.reliability.harness import (
    LostMessages,
    check_exactly_once,
    exited,
    log_lines,
    open_conversations,
    relay_sends,
    reliability_stack,
    run_stream,
    summary,
)

pytestmark = pytest.mark.reliability

CONVERSATIONS = 15
TEXTS = 150


def _assert_exactly_once(stream, outcome, line):
    assert not stream.errors, stream.errors
    assert outcome.ok, f"{line}\n{outcome.details()}"


def _inbound_codes(stack):
    return [a.get("status_code") for w in stack.sandbox.client.webhooks() if w["kind"] == "inbound"
            for a in w["attempts"]]


def test_redis_restart_mid_stream(tmp_path):
    """Scenario 2: Redis (append-only) stopped and started again on its port and data dir,
    with sends in flight (500 ms per Vonage call, 15 texts a second)."""
    began = time.monotonic()
    # beat runs the sweeper, as in production: a job that a worker's BRPOP took just before
    # Redis stopped is out of the broker for good (in no list, not in `unacked`), and only the
    # outbox brings it back
    with reliability_stack(tmp_path, beat=True) as stack:
        assert stack.sandbox is not None
        conversations = open_conversations(stack, CONVERSATIONS)
        stack.sandbox.client.set_faults(latency_ms=500)
        stream = run_stream(stack, conversations, TEXTS, rate=15, faults=[
            (5, "redis restart", lambda: stack.restart_redis(downtime=2.0))])
        outcome = check_exactly_once(stack, stream, timeout=60)
        codes = _inbound_codes(stack)
        line = summary("redis-restart", outcome, "1xRedis restart (2 s down, AOF)",
                       time.monotonic() - began, waited_s=f"{outcome.waited:.1f}",
                       webhook_503=codes.count(503))
        print(outcome.details())
        assert not stream.errors, stream.errors
        # every process rode out the restart (a worker holding deliveries used to exit:
        # workers/broker_recovery.py)
        assert not exited(stack), f"{line}\nexited: {exited(stack)}; logs in {stack.logs}"
        assert not outcome.duplicated and not outcome.unexpected and not outcome.lost, line
        # the workers reconnected and still consume (celery#8030 would leave them idle)
        earlier = set(relay_sends(stack))
        after = run_stream(stack, conversations, 15, rate=15)
        again = check_exactly_once(stack, after, timeout=30, before=earlier)
        assert again.ok, again.details()
        if outcome.audit_problems:
            raise LostMessages(f"{line}\n{outcome.details()}")


def test_redis_unreachable_for_ten_seconds_during_a_webhook_burst(tmp_path):
    """Scenario 3: Redis frozen (SIGSTOP) for 10 s while texts keep coming: webhooks answer
    503 and the sandbox's Vonage-style retries bring them in once Redis is back."""
    began = time.monotonic()
    with reliability_stack(tmp_path) as stack:
        assert stack.redis is not None and stack.sandbox is not None
        conversations = open_conversations(stack, CONVERSATIONS)

        def outage() -> None:
            stack.redis.pause()
            time.sleep(10)
            stack.redis.resume()

        # a burst: 150 texts in 10 s, the outage over the middle of it
        stream = run_stream(stack, conversations, TEXTS, rate=15, faults=[
            (2, "redis frozen 10 s", outage)])
        outcome = check_exactly_once(stack, stream, timeout=90)
        webhooks = [w for w in stack.sandbox.client.webhooks() if w["kind"] == "inbound"]
        codes = [a.get("status_code") for w in webhooks for a in w["attempts"]]
        retried = sum(1 for w in webhooks if len(w["attempts"]) > 1)
        line = summary("redis-unreachable-10s", outcome, "Redis SIGSTOP 10 s",
                       time.monotonic() - began, webhook_503=codes.count(503),
                       webhook_no_answer=codes.count(None), webhooks_retried=retried,
                       waited_s=f"{outcome.waited:.1f}")
        _assert_exactly_once(stream, outcome, line)
        assert codes.count(503) > 0  # the outage was seen, and answered as it should be
        assert not [c for c in codes if c is not None and c >= 500 and c != 503], codes
        assert all(w["status"] == "delivered" for w in webhooks)


def test_vonage_throttles_fails_and_is_slow(tmp_path):
    """Scenario 4: 20 % of sends throttled (status 1), 5 % HTTP 500, 150 ms per call."""
    began = time.monotonic()
    with reliability_stack(tmp_path, env={"SMSPROXY_SEND_RATE_PER_SECOND": "0"}) as stack:
        assert stack.sandbox is not None
        # conversations first: the faults hit Number Insight and the Numbers API too
        conversations = open_conversations(stack, CONVERSATIONS)
        stack.sandbox.client.set_faults(throttle_rate=0.2, error_rate=0.05, latency_ms=150,
                                        seed=94)
        stream = run_stream(stack, conversations, TEXTS, rate=10)
        outcome = check_exactly_once(stack, stream, timeout=60)
        stats = stack.sandbox.client.stats()
        line = summary("vonage-throttle-5xx-latency", outcome,
                       "throttle 20%/HTTP500 5%/latency 150ms", time.monotonic() - began,
                       sends_rejected_status1=stats["sms_rejected"],
                       retried=log_lines(stack, "worker", "Retry in"))
        stack.sandbox.client.set_faults(throttle_rate=0.0, error_rate=0.0, latency_ms=0)
        _assert_exactly_once(stream, outcome, line)
        assert stats["sms_rejected"] > 0  # the throttling happened


def test_every_webhook_three_times_some_concurrently(tmp_path):
    """Scenario 5: Vonage delivers each webhook three times (two of them at once)."""
    began = time.monotonic()
    with reliability_stack(tmp_path) as stack:
        assert stack.sandbox is not None
        conversations = open_conversations(stack, CONVERSATIONS)
        stream = run_stream(stack, conversations, TEXTS, rate=15, duplicates=3)
        outcome = check_exactly_once(stack, stream, timeout=60)
        inbound = [w for w in stack.sandbox.client.webhooks() if w["kind"] == "inbound"]
        line = summary("webhooks-x3", outcome, "every webhook x3", time.monotonic() - began,
                       inbound_webhooks=len(inbound))
        _assert_exactly_once(stream, outcome, line)
        assert len(inbound) == 3 * TEXTS


def test_warm_shutdown_of_all_workers_mid_stream(tmp_path):
    """Scenario 6: every worker gets SIGTERM (warm shutdown) mid-stream; they come back."""
    began = time.monotonic()
    # 150 ms per Vonage call: the shutdown finds sends in flight and retries waiting
    with reliability_stack(tmp_path, sandbox={"latency_ms": 150}) as stack:
        conversations = open_conversations(stack, CONVERSATIONS)
        downtime = {}

        def restart_all() -> None:
            stopped_at = time.monotonic()
            names = stack.stop_workers()
            stack.start_workers(names)
            downtime["s"] = time.monotonic() - stopped_at

        stream = run_stream(stack, conversations, TEXTS, rate=10, faults=[
            (5, "SIGTERM all workers", restart_all)])
        outcome = check_exactly_once(stack, stream, timeout=60)
        line = summary("warm-shutdown-all-workers", outcome, "SIGTERM 2/2 workers + restart",
                       time.monotonic() - began, workers_down_s=f"{downtime['s']:.1f}",
                       waited_s=f"{outcome.waited:.1f}")
        _assert_exactly_once(stream, outcome, line)
