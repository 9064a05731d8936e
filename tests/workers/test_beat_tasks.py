"""The periodic tasks: maintain_pool, sweep_stranded, expire_conversations."""

import time

from shared.domain import ConversationStatus, MessageKind, OutboundSms
from shared.jobs import TaskName
from shared.keys import Keys
from shared.outbox import outbox_entry
from shared.vonage_gateway import AvailableNumber, VonageFailure
from tests.workers.conftest import POOL, A, B, run_task
from workers import tasks

KEYS = Keys()
SPARE = AvailableNumber("447700900150", "GB", "1.25")


def test_maintain_pool_enqueues_a_number_change_sms_for_a_lost_number(make_worker):
    worker = make_worker(SMSPROXY_POOL_TARGETS="GB=2")
    conversation = worker.start()
    lost = conversation.participants[0].proxy_number
    losers = [p.number for p in conversation.participants if p.proxy_number == lost]
    worker.vonage.owned = [n for n in worker.vonage.owned if n.msisdn != lost]  # taken back
    worker.vonage.available = [SPARE]
    run_task(tasks.maintain_pool)
    sends = [args for args, _, _ in worker.queue.of(TaskName.SEND_SMS)]
    assert len(sends) == len(losers) >= 1
    assert [t for t, *_ in worker.queue.enqueued] == [TaskName.SEND_SMS] * len(sends)
    for (outbound_id,) in sends:
        message = worker.services.messages.outbound(outbound_id)
        assert message.kind is MessageKind.NUMBER_CHANGE and message.recipient in losers
        assert message.sender != lost and f"+{message.sender}" in message.text
    assert worker.vonage.sent == []  # enqueued, not sent by the maintenance task
    assert SPARE.msisdn in {n.msisdn for n in worker.services.inventory.numbers()}


def test_maintain_pool_buys_to_target_and_enqueues_nothing(make_worker):
    worker = make_worker(SMSPROXY_POOL_TARGETS="GB=3")
    worker.vonage.available = [SPARE]
    run_task(tasks.maintain_pool)
    assert worker.services.inventory.size("GB") == 3
    assert worker.queue.enqueued == []


def test_maintain_pool_stops_quietly_when_vonage_fails(worker):
    worker.vonage.numbers_failure = VonageFailure("http503", "HTTP 503", transient=True)
    run_task(tasks.maintain_pool)  # no exception: the next scheduled run starts clean
    assert worker.counter("smsproxy.pool.maintenance_failed") == 1
    assert worker.services.inventory.size("GB") == len(POOL)
    assert worker.queue.enqueued == []


def test_sweep_stranded_requeues_a_send_nobody_finished_and_republishes_a_lost_job(worker):
    messages = worker.services.messages
    for outbound_id in ("stranded", "recent"):
        messages.owe(OutboundSms(outbound_id, None, MessageKind.RELAY, POOL[0], A, "x"))
    worker.redis.zadd(KEYS.outbound_open(), {"stranded": 0})  # owed long ago
    worker.redis.hset(KEYS.pending_jobs(), "inbound:lost", outbox_entry("inbound", "job-body"))
    worker.redis.zadd(KEYS.pending_due(), {"inbound:lost": 0})
    run_task(tasks.sweep_stranded)
    assert worker.queue.enqueued == [(TaskName.SEND_SMS, ("stranded",), {}, None)]
    assert worker.redis.lrange("inbound", 0, -1) == ["job-body"]
    run_task(tasks.sweep_stranded)  # pushed forward: not queued again by the next sweep
    assert len(worker.queue.enqueued) == 1 and worker.redis.llen("inbound") == 1


def test_expire_conversations_ends_the_due_ones_and_notifies(make_worker):
    worker = make_worker(SMSPROXY_CALLBACK_SECRET="s3cret")
    conversation = worker.start(callback_url="https://market.example/events")
    store = worker.services.conversation_store
    store.transition(conversation.id, lambda c: c.with_status(c.status, expires_at=time.time() - 1))
    run_task(tasks.expire_conversations)
    assert worker.conversation(conversation.id).status is ConversationStatus.EXPIRED
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation.id, "event": "expired"},),
         {}, None)]
    assert worker.services.routes.find(A, conversation.participants[0].proxy_number) is None
    run_task(tasks.expire_conversations)  # the next sweep finds nothing more to end
    assert len(worker.queue.enqueued) == 1
    assert worker.counter("smsproxy.conversations.expired") == 1


def test_expire_conversations_leaves_live_ones_alone(worker):
    conversation = worker.start()
    run_task(tasks.expire_conversations)
    assert worker.conversation(conversation.id).status is ConversationStatus.ACTIVE
    assert worker.services.routes.find(B, conversation.participants[1].proxy_number)
    assert worker.queue.enqueued == []
