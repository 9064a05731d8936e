"""survives_redis_outages: a Redis error inside a task becomes a retry with backoff, bounded."""

import pytest
import redis
from celery.exceptions import Retry

from shared.conversation_store import ConversationStore
from shared.jobs import TaskName
from shared.outbound import intro_ids
from shared.routes import RouteTable
from tests.workers.conftest import A, inbound_payload, run_task
from workers import tasks


def broken(*_, **__):
    raise redis.ConnectionError("Redis is restarting")


def test_a_redis_error_in_relay_inbound_is_retried_and_the_job_kept(worker, monkeypatch):
    conversation = worker.start()
    payload = inbound_payload(A, conversation.participants[0].proxy_number, "m1", "hello")
    job = worker.keep_in_outbox("inbound", "m1")
    monkeypatch.setattr(RouteTable, "find", broken)
    with pytest.raises(Retry) as info:
        run_task(tasks.relay_inbound, payload, retries=3)
    retry = info.value
    assert isinstance(retry.exc, redis.ConnectionError)
    assert 0 < retry.when <= worker.settings.visibility_timeout_seconds / 3
    assert retry.sig.args == (payload,) and retry.sig.options["retries"] == 4
    assert worker.in_outbox(job)  # not settled: the sweeper still covers it
    monkeypatch.undo()
    run_task(tasks.relay_inbound, *retry.sig.args, retries=4)  # Redis is back
    assert [s["client_ref"] for s in worker.vonage.sent] == ["relay-m1"]
    assert not worker.in_outbox(job)


def test_a_task_gives_up_after_its_redis_retries(worker, monkeypatch):
    conversation = worker.start()
    payload = inbound_payload(A, conversation.participants[0].proxy_number, "m1", "hello")
    monkeypatch.setattr(RouteTable, "find", broken)
    with pytest.raises(redis.ConnectionError):
        run_task(tasks.relay_inbound, payload, retries=tasks.REDIS_MAX_RETRIES)


@pytest.mark.parametrize("task, args", [
    (tasks.create_conversation, ("c" * 32,)),
    (tasks.record_receipt, ({"messageId": "v1", "status": "delivered", "msisdn": A},)),
    (tasks.expire_conversations, ()),
    (tasks.notify_callback, ({"conversation_id": "c" * 32, "event": "active"},)),
    (tasks.flush_concat, ("group", "instance")),
    (tasks.send_sms, ("intro-" + "c" * 32 + "-0",)),
])
def test_every_retrying_task_retries_through_a_redis_error(worker, monkeypatch, task, args):
    worker.add_conversation(callback_url="https://market.example/events")
    monkeypatch.setattr(ConversationStore, "get", broken)
    monkeypatch.setattr(ConversationStore, "due_for_expiry", broken)
    monkeypatch.setattr("shared.messages.MessageLog.apply_receipt", broken)
    monkeypatch.setattr("shared.messages.MessageLog.outbound", broken)
    monkeypatch.setattr("shared.reassembly.Reassembler.flush_partial", broken)
    with pytest.raises(Retry) as info:
        run_task(task, *args)
    assert isinstance(info.value.exc, redis.ConnectionError)
    assert 0 < info.value.when <= worker.settings.max_backoff_seconds


def test_a_send_retried_many_times_still_backs_off_within_the_cap(worker, monkeypatch):
    # send_sms has no retry bound (waits for the rate limit count as retries): a send that has
    # waited over a thousand times and then meets a Redis error is retried, not crashed
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    monkeypatch.setattr("shared.messages.MessageLog.outbound", broken)
    with pytest.raises(Retry) as info:
        run_task(tasks.send_sms, intro, retries=1100)
    assert 0 < info.value.when <= worker.settings.max_backoff_seconds


@pytest.mark.parametrize("retries", [0, 1, 5, 1023, 1024, 10_000])
def test_backoff_is_jittered_below_the_cap(worker, retries):
    cap = worker.settings.max_backoff_seconds
    ceiling = min(cap, 2.0 ** min(retries, 64))
    assert ceiling / 2 <= tasks.backoff(retries, worker.runtime) <= ceiling


def test_a_redis_error_after_reassembly_loses_no_part(worker, monkeypatch):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    parts = [inbound_payload(A, to, f"p{n}", text, concat_ref="r1", concat_part=n,
                             concat_total=2) for n, text in ((1, "hello "), (2, "world"))]
    run_task(tasks.relay_inbound, parts[0])
    with monkeypatch.context() as patch:
        patch.setattr(RouteTable, "find", broken)  # Redis fails just after the last part is in
        with pytest.raises(Retry):
            run_task(tasks.relay_inbound, parts[1])
    run_task(tasks.relay_inbound, parts[1], retries=1)
    for flush, _, _ in worker.queue.of(TaskName.FLUSH_CONCAT):
        run_task(tasks.flush_concat, *flush)
    assert [s["text"] for s in worker.vonage.sent] == ["hello world"]
