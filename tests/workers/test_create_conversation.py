"""create_conversation: establish, enqueue the intros and the callback, retry what is transient."""

import logging
import threading

import pytest
import redis
from celery.exceptions import Retry

from shared.conversations import INSIGHT_MAX_ATTEMPTS
from shared.domain import ConversationStatus
from shared.jobs import TaskName
from shared.logging import ContextFilter, log_context, reset_log_context
from shared.messages import MessageLog
from shared.outbound import intro_ids
from tests.workers.conftest import run_task
from workers import tasks

CALLBACK = "https://market.example/events"
C, D = "447400100011", "447400100012"  # not looked up before: Number Insight is asked


@pytest.fixture
def worker(make_worker):
    return make_worker(SMSPROXY_CALLBACK_SECRET="s3cret")


def test_success_sends_both_intros_at_once_and_enqueues_the_callback(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    run_task(tasks.create_conversation, conversation_id)
    assert worker.conversation(conversation_id).status is ConversationStatus.ACTIVE
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation_id, "event": "active"},),
         {}, None),
    ]
    assert sorted(s["client_ref"] for s in worker.vonage.sent) == list(intro_ids(conversation_id))
    assert all(worker.services.messages.outbound_state(i) == "submitted"
               for i in intro_ids(conversation_id))


def test_the_two_intros_are_sent_side_by_side(make_worker):
    worker = make_worker()
    # each send waits for the other to be in progress: sent one after the other, the first
    # would break the barrier
    barrier = threading.Barrier(2, timeout=5)
    sent = worker.vonage.send_sms

    def meeting(**fields):
        barrier.wait()
        return sent(**fields)

    worker.vonage.send_sms = meeting
    conversation_id = worker.add_conversation()
    run_task(tasks.create_conversation, conversation_id)
    assert len(worker.vonage.sent) == 2 and not barrier.broken


def test_each_intro_sent_from_the_create_names_its_send_in_the_log(worker, caplog):
    conversation_id = worker.add_conversation()
    handler = caplog.handler
    handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="shared.sending"):
        reset_log_context(task_id="t1", task_name=tasks.create_conversation.name)
        run_task(tasks.create_conversation, conversation_id)
    sent = [r for r in caplog.records if r.getMessage().startswith("sent ")]
    assert sorted(r.message_id for r in sent) == list(intro_ids(conversation_id))
    assert all(r.task_id == "t1" and r.conversation_id == conversation_id for r in sent)
    assert "message_id" not in log_context()  # the task's own later lines name no send
    reset_log_context()


def test_without_inline_sends_the_intros_go_through_the_outbound_queue(make_worker):
    worker = make_worker(SMSPROXY_INLINE_SENDS="false")
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation_id, "event": "active"},),
         {}, None),
        (TaskName.SEND_SMS, (intro_ids(conversation_id)[0],), {}, None),
        (TaskName.SEND_SMS, (intro_ids(conversation_id)[1],), {}, None),
    ]
    assert all(worker.services.messages.outbound(i) for i in intro_ids(conversation_id))
    assert worker.vonage.sent == []


def test_an_intro_that_has_to_wait_goes_to_the_outbound_queue(make_worker):
    worker = make_worker(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    conversation_id = worker.add_conversation()
    run_task(tasks.create_conversation, conversation_id)
    assert len(worker.vonage.sent) == 1
    ((args, kwargs, countdown),) = worker.queue.of(TaskName.SEND_SMS)
    assert args[0] in intro_ids(conversation_id) and args[0] != worker.vonage.sent[0][
        "client_ref"]
    assert kwargs == {} and 0 < countdown <= 2.0
    assert worker.services.messages.outbound_state(args[0]) == "queued"  # no attempt spent


def test_intros_vonage_took_but_redis_could_not_record_are_recorded_later(
    worker, monkeypatch
):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    with monkeypatch.context() as patch:
        patch.setattr(MessageLog, "mark_submitted", _broken)
        run_task(tasks.create_conversation, conversation_id)
    assert len(worker.vonage.sent) == 2
    queued = worker.queue.of(TaskName.SEND_SMS)
    assert sorted(args for args, _, _ in queued) == [(i,) for i in intro_ids(conversation_id)]
    assert all(set(kwargs) == {"accepted_ids"} for _, kwargs, _ in queued)
    worker.queue.enqueued.clear()
    run_task(tasks.create_conversation, conversation_id)  # redelivered: in doubt, not re-sent
    assert len(worker.vonage.sent) == 2
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == []  # reported once, on the first run


def test_a_redis_error_before_an_intro_send_retries_the_create(worker, monkeypatch):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    with monkeypatch.context() as patch:
        patch.setattr(MessageLog, "claim_send", _broken)
        with pytest.raises(Retry):
            run_task(tasks.create_conversation, conversation_id)
    assert worker.vonage.sent == []
    run_task(tasks.create_conversation, conversation_id, retries=1)
    assert sorted(s["client_ref"] for s in worker.vonage.sent) == list(intro_ids(conversation_id))


def _broken(*_, **__):
    raise redis.ConnectionError("Redis is restarting")


def test_no_callback_without_a_callback_url(worker):
    conversation_id = worker.add_conversation()
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.enqueued == [] and len(worker.vonage.sent) == 2


def test_a_redelivered_create_sends_nothing_again_and_reports_once(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    run_task(tasks.create_conversation, conversation_id)
    worker.queue.enqueued.clear()
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.enqueued == []
    assert len(worker.vonage.sent) == 2


def test_a_transient_number_insight_failure_retries_below_the_visibility_timeout(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK, numbers=(C, D))
    worker.vonage.insight_failures = 1
    with pytest.raises(Retry) as info:
        run_task(tasks.create_conversation, conversation_id, retries=4)
    retry = info.value
    assert 0 < retry.when <= worker.settings.visibility_timeout_seconds / 3
    assert retry.sig.args == (conversation_id,) and retry.sig.options["retries"] == 5
    assert worker.conversation(conversation_id).status is ConversationStatus.PENDING
    assert worker.queue.enqueued == []
    # the retry finds Number Insight back, and the lookup that succeeded is not made again
    run_task(tasks.create_conversation, conversation_id, retries=5)
    assert worker.conversation(conversation_id).status is ConversationStatus.ACTIVE


def test_after_create_max_retries_the_conversation_fails_and_is_reported(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK, numbers=(C, D))
    worker.vonage.insight_failures = 1
    run_task(tasks.create_conversation, conversation_id, retries=tasks.CREATE_MAX_RETRIES)
    failed = worker.conversation(conversation_id)
    assert failed.status is ConversationStatus.FAILED
    assert failed.failure_reason == "number_insight_unavailable"
    assert worker.counter("smsproxy.conversations.failed") == 1
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation_id, "event": "failed"},),
         {}, None),
    ]


def test_celery_retries_until_the_lookup_attempts_are_used_up(worker):
    # task.apply runs each retry at once (no countdown): the whole chain, through Celery itself
    conversation_id = worker.add_conversation(callback_url=CALLBACK, numbers=(C, D))
    worker.vonage.insight_failures = 1000
    result = tasks.create_conversation.apply(args=(conversation_id,))
    assert result.state == "SUCCESS"
    # both participants' lookups are made on every attempt, each has INSIGHT_MAX_ATTEMPTS
    assert worker.vonage.insight_calls == 2 * INSIGHT_MAX_ATTEMPTS
    assert worker.conversation(conversation_id).failure_reason == "number_insight_unavailable"
    assert worker.counter("smsproxy.conversations.failed") == 1
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == [
        (({"conversation_id": conversation_id, "event": "failed"},), {}, None)]


def test_an_invalid_number_fails_at_once(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK, numbers=(C, D))
    worker.vonage.invalid.add(D)
    run_task(tasks.create_conversation, conversation_id)  # no Retry
    failed = worker.conversation(conversation_id)
    assert failed.status is ConversationStatus.FAILED
    assert failed.failure_reason.startswith("participant 2: invalid number")
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation_id, "event": "failed"},),
         {}, None),
    ]


def test_an_unknown_conversation_is_a_no_op(worker):
    run_task(tasks.create_conversation, "f" * 32)
    assert worker.queue.enqueued == []


def _keep_create_in_outbox(worker, conversation_id):
    """The create job in the outbox, as the API's publish leaves it until a run settles it."""
    return worker.keep_in_outbox("create", conversation_id)


def test_a_redis_error_queuing_the_callback_is_reported_by_the_retry(worker, monkeypatch):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    job = _keep_create_in_outbox(worker, conversation_id)
    real_enqueue = worker.queue.enqueue

    def enqueue(task, *args, **kwargs):
        if task is TaskName.NOTIFY_CALLBACK:
            raise redis.ConnectionError("Redis is restarting")
        return real_enqueue(task, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(worker.queue, "enqueue", enqueue)
        with pytest.raises(Retry):
            run_task(tasks.create_conversation, conversation_id)
    assert worker.conversation(conversation_id).status is ConversationStatus.ACTIVE
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == []
    run_task(tasks.create_conversation, conversation_id, retries=1)
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == [
        (({"conversation_id": conversation_id, "event": "active"},), {}, None)
    ]
    assert len(worker.vonage.sent) == 2  # the intros were sent once
    assert not worker.in_outbox(job)
    worker.queue.enqueued.clear()
    run_task(tasks.create_conversation, conversation_id)  # settled: a redelivery reports nothing
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == []


def test_a_create_that_died_after_activating_is_reported_by_its_redelivery(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    _keep_create_in_outbox(worker, conversation_id)
    # the first run activated the conversation, then its worker was killed
    worker.services.conversations.establish(conversation_id, worker.runtime.accounts())
    assert worker.conversation(conversation_id).status is ConversationStatus.ACTIVE
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == [
        (({"conversation_id": conversation_id, "event": "active"},), {}, None)
    ]


def test_a_failure_whose_report_was_lost_is_reported_by_a_redelivery(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK, numbers=(C, D))
    _keep_create_in_outbox(worker, conversation_id)
    worker.services.conversation_store.finish(
        conversation_id, ConversationStatus.FAILED, "number_insight_unavailable")
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == [
        (({"conversation_id": conversation_id, "event": "failed"},), {}, None)
    ]
