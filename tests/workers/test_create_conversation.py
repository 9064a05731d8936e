"""create_conversation: establish, enqueue the intros and the callback, retry what is transient."""

import pytest
from celery.exceptions import Retry

from shared.conversations import INSIGHT_MAX_ATTEMPTS
from shared.domain import ConversationStatus
from shared.jobs import TaskName
from shared.outbound import intro_ids
from tests.workers.conftest import run_task
from workers import tasks

CALLBACK = "https://market.example/events"
C, D = "447400100011", "447400100012"  # not looked up before: Number Insight is asked


@pytest.fixture
def worker(make_worker):
    return make_worker(SMSPROXY_CALLBACK_SECRET="s3cret")


def test_success_enqueues_both_intros_and_the_callback(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    run_task(tasks.create_conversation, conversation_id)
    assert worker.conversation(conversation_id).status is ConversationStatus.ACTIVE
    assert worker.queue.enqueued == [
        (TaskName.SEND_SMS, (intro_ids(conversation_id)[0],), {}, None),
        (TaskName.SEND_SMS, (intro_ids(conversation_id)[1],), {}, None),
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation_id, "event": "active"},),
         {}, None),
    ]
    assert all(worker.services.messages.outbound(i) for i in intro_ids(conversation_id))
    assert worker.vonage.sent == []  # the intros go through the outbound queue


def test_no_callback_without_a_callback_url(worker):
    conversation_id = worker.add_conversation()
    run_task(tasks.create_conversation, conversation_id)
    assert [t for t, *_ in worker.queue.enqueued] == [TaskName.SEND_SMS, TaskName.SEND_SMS]


def test_a_redelivered_create_enqueues_the_intros_again_but_reports_once(worker):
    conversation_id = worker.add_conversation(callback_url=CALLBACK)
    run_task(tasks.create_conversation, conversation_id)
    worker.queue.enqueued.clear()
    run_task(tasks.create_conversation, conversation_id)
    assert worker.queue.of(TaskName.NOTIFY_CALLBACK) == []
    assert [a for a, _, _ in worker.queue.of(TaskName.SEND_SMS)] == [
        (i,) for i in intro_ids(conversation_id)]


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
    assert worker.vonage.insight_calls == INSIGHT_MAX_ATTEMPTS
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
