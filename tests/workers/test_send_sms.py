"""send_sms and the send-again policy shared with the relay's inline send."""

import json

import pytest
import redis
from celery.exceptions import Retry

from shared.jobs import TaskName
from shared.keys import Keys
from shared.messages import MessageLog
from shared.outbound import intro_ids
from shared.sending import InDoubt, RecordLater, RetryLater, Throttled
from shared.vonage_gateway import VonageFailure
from tests.workers.conftest import A, B, inbound_payload, run_task
from workers import tasks

TRANSIENT = VonageFailure("1", "Throttled", transient=True)
PERMANENT = VonageFailure("7", "Number barred", transient=False)


def relay(worker, message_id="m1", text="hello"):
    """A text from A to its proxy, relayed by the task (inline, unless settings say not)."""
    to = worker.conversation().participants[0].proxy_number
    run_task(tasks.relay_inbound, inbound_payload(A, to, message_id, text))
    return f"relay-{message_id}"


def broken(*_, **__):
    raise redis.ConnectionError("Redis is restarting")


# -- the inline send that has to wait goes to the outbound queue -----------------------------

def test_throttled_inline_send_is_enqueued_for_when_a_token_is_due(make_worker):
    worker = make_worker(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    worker.start()
    relay(worker, "m1")
    second = relay(worker, "m2")
    assert len(worker.vonage.sent) == 1
    ((args, kwargs, countdown),) = worker.queue.of(TaskName.SEND_SMS)
    assert args == (second,) and kwargs == {}
    assert 0 < countdown <= 2.0  # the token is due within a second, plus up to 1 s of spread
    assert worker.services.messages.outbound_state(second) == "queued"  # no attempt spent


def test_transient_failure_inline_is_enqueued_with_backoff(worker):
    worker.start()
    worker.vonage.failures = [TRANSIENT]
    outbound_id = relay(worker)
    ((args, kwargs, countdown),) = worker.queue.of(TaskName.SEND_SMS)
    assert args == (outbound_id,) and kwargs == {}
    assert 1.0 <= countdown <= 2.0  # backoff after the first attempt
    assert worker.vonage.sent == []
    run_task(tasks.send_sms, *args, **kwargs)  # the queued retry sends it
    assert [s["client_ref"] for s in worker.vonage.sent] == [outbound_id]


def test_send_in_doubt_inline_waits_below_the_visibility_timeout(worker):
    worker.start()
    # an earlier delivery of this job claimed the send and its worker died mid-call
    worker.redis.set(Keys().send_claim("relay-m1"), "1", ex=60)
    outbound_id = relay(worker)
    ((args, kwargs, countdown),) = worker.queue.of(TaskName.SEND_SMS)
    assert args == (outbound_id,) and kwargs == {}
    # a countdown past the visibility timeout would have the broker hand the task out again
    # and again (kombu#337): it looks again sooner, and waits again if still in doubt
    assert 0 < countdown <= worker.settings.max_backoff_seconds
    assert worker.vonage.sent == []


def test_send_vonage_took_but_redis_could_not_record_is_recorded_later(worker, monkeypatch):
    worker.start()
    with monkeypatch.context() as patch:
        patch.setattr(MessageLog, "mark_submitted", broken)
        outbound_id = relay(worker)
    assert len(worker.vonage.sent) == 1
    ((args, kwargs, countdown),) = worker.queue.of(TaskName.SEND_SMS)
    assert args == (outbound_id,) and kwargs == {"accepted_ids": ["v1"]}
    assert 0.5 <= countdown <= 1.0
    run_task(tasks.send_sms, *args, **kwargs)
    assert len(worker.vonage.sent) == 1  # recorded, never sent again
    assert worker.services.messages.outbound_state(outbound_id) == "submitted"
    record = worker.redis.hgetall(Keys().outbound(outbound_id))
    assert json.loads(record["vonage_ids"]) == ["v1"]


@pytest.mark.parametrize("wait", [
    Throttled(wait=100.0), RetryLater("busy", attempts=40), InDoubt(wait=61.0),
    RecordLater(["v1"]),
])
def test_every_send_again_countdown_stays_below_a_third_of_the_visibility_timeout(worker, wait):
    countdown, _ = tasks.send_again(wait, worker.runtime)
    assert 0 < countdown <= worker.settings.visibility_timeout_seconds / 3


def test_send_again_refuses_what_is_not_a_send_to_try_again(worker):
    with pytest.raises(TypeError):
        tasks.send_again(ValueError("no"), worker.runtime)


# -- the send_sms task ----------------------------------------------------------------------

def test_send_sms_sends_once_however_often_it_runs(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    run_task(tasks.send_sms, intro)
    run_task(tasks.send_sms, intro)
    assert [(s["to"], s["client_ref"]) for s in worker.vonage.sent] == [(A, intro)]
    assert worker.services.messages.outbound_state(intro) == "submitted"
    assert worker.counter("smsproxy.outbound.sent") == 1


def test_send_sms_records_a_permanent_failure_and_does_not_retry(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[1]
    worker.vonage.failures = [PERMANENT]
    run_task(tasks.send_sms, intro)  # no Retry
    record = worker.redis.hgetall(Keys().outbound(intro))
    assert record["state"] == "failed" and record["error_code"] == "7"
    assert worker.counter("smsproxy.outbound.failed") == 1
    assert worker.vonage.sent == [] and worker.queue.enqueued == []


def test_send_sms_retries_a_transient_failure_through_celery(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[1]
    worker.vonage.failures = [TRANSIENT]
    with pytest.raises(Retry) as info:
        run_task(tasks.send_sms, intro, retries=2)
    retry = info.value
    assert retry.sig.args == (intro,) and retry.sig.kwargs == {}
    assert retry.sig.options["retries"] == 3
    assert 1.0 <= retry.when <= 2.0  # backoff of the send's own attempts (1), not Celery's
    assert worker.vonage.sent == []
    run_task(tasks.send_sms, *retry.sig.args, retries=3, **retry.sig.kwargs)
    assert [(s["to"], s["client_ref"]) for s in worker.vonage.sent] == [(B, intro)]


def test_send_sms_retries_a_throttled_send_without_spending_an_attempt(make_worker):
    worker = make_worker(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    worker.start()
    first, second = intro_ids(worker.conversation().id)
    run_task(tasks.send_sms, first)
    with pytest.raises(Retry) as info:
        run_task(tasks.send_sms, second)
    assert 0 < info.value.when <= 2.0
    assert worker.redis.hget(Keys().outbound(second), "attempts") == "0"


def test_send_sms_in_doubt_retries_below_the_visibility_timeout(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    messages = worker.services.messages
    assert messages.claim_send(intro, worker.services.sender.lease_seconds).acquired
    with pytest.raises(Retry) as info:
        run_task(tasks.send_sms, intro)
    assert 0 < info.value.when <= worker.settings.max_backoff_seconds
    # Vonage had taken it: its receipt settles the doubt, and the retry then does nothing
    messages.apply_receipt(intro, "v-late", "delivered", "0")
    run_task(tasks.send_sms, intro)
    assert worker.vonage.sent == []


def test_send_sms_with_accepted_ids_records_without_calling_vonage(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    worker.vonage.failures = [PERMANENT]  # would be recorded failed if Vonage were called
    run_task(tasks.send_sms, intro, accepted_ids=["v7", "v8"])
    assert worker.services.messages.outbound_state(intro) == "submitted"
    record = worker.redis.hgetall(Keys().outbound(intro))
    assert json.loads(record["vonage_ids"]) == ["v7", "v8"] and record["parts"] == "2"
    assert worker.vonage.failures == [PERMANENT]  # untouched: no call


def test_a_record_retried_through_a_redis_outage_keeps_its_accepted_ids(worker, monkeypatch):
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    monkeypatch.setattr(MessageLog, "mark_submitted", broken)
    with pytest.raises(Retry) as info:
        run_task(tasks.send_sms, intro, accepted_ids=["v7"])
    assert info.value.sig.args == (intro,)
    assert info.value.sig.kwargs == {"accepted_ids": ["v7"]}
