"""The outbox: a webhook job the broker lost is published again; a send nobody finished is
queued again; a settled job is left alone."""

from __future__ import annotations

import base64
import json
import time

import pytest

from shared.domain import MessageKind, OutboundSms
from shared.jobs import TaskName
from shared.messages import MessageLog
from shared.outbox import Outbox, outbox_entry, republish_after
from shared.settings import Settings
from web.queue import Publisher

pytestmark = pytest.mark.integration


def test_lost_job_is_republished_and_settled_job_is_not(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url,
                                  "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": "2",
                                  "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "1"})
    publisher = Publisher(settings, real_redis)
    sweeper = Outbox(real_redis, settings)
    for message_id in ("lost", "handled"):
        publisher.enqueue_webhook("inbound", message_id, TaskName.RELAY_INBOUND,
                                  {"messageId": message_id}, 60)
    real_redis.delete("inbound")  # a worker popped both and died before recording them
    sweeper.settle("inbound", "handled")  # ...except that this one had been handled
    assert sweeper.sweep(time.time()).republished == 0  # not due yet
    real_redis.zadd("smsproxy:pending:due", {"inbound:lost": 0})  # time passes
    assert sweeper.sweep(time.time()).republished == 1
    assert real_redis.llen("inbound") == 1
    body = json.loads(base64.b64decode(json.loads(real_redis.lindex("inbound", 0))["body"]))
    assert body[0] == [{"messageId": "lost"}]
    # and not again before its next due time
    assert sweeper.sweep(time.time()).republished == 0
    assert republish_after(settings) < 60


def test_sweeper_pushes_to_the_queue_the_outbox_names(real_redis, redis_url):
    # not the one in the message's envelope: the sweeper does not read Celery's format
    settings = Settings.from_env({"REDIS_URL": redis_url})
    message = json.dumps({"properties": {"delivery_info": {"routing_key": "inbound"}}})
    real_redis.hset("smsproxy:pending:jobs", "inbound:m1", outbox_entry("elsewhere", message))
    real_redis.zadd("smsproxy:pending:due", {"inbound:m1": 0})
    assert Outbox(real_redis, settings).sweep(time.time()).republished == 1
    assert real_redis.lrange("elsewhere", 0, -1) == [message]
    assert real_redis.llen("inbound") == 0


def test_job_stored_by_the_previous_release_is_republished_once(real_redis, redis_url):
    # then the outbox held the bare message; its queue comes from the message, once
    settings = Settings.from_env({"REDIS_URL": redis_url})
    publisher, sweeper = Publisher(settings, real_redis), Outbox(real_redis, settings)
    publisher.enqueue_webhook("receipt", "r1", TaskName.RECORD_RECEIPT, {"messageId": "r1"}, 60)
    message = real_redis.lpop("receipts")
    real_redis.hset("smsproxy:pending:jobs", "receipt:r1", message)
    real_redis.zadd("smsproxy:pending:due", {"receipt:r1": 0})
    assert sweeper.sweep(time.time()).republished == 1
    assert real_redis.lrange("receipts", 0, -1) == [message]
    assert real_redis.hget("smsproxy:pending:jobs", "receipt:r1") == outbox_entry("receipts",
                                                                                  message)
    assert sweeper.sweep(time.time()).republished == 0  # due again only later


def test_unfinished_send_is_requeued_finished_one_is_not(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    messages, sweeper = MessageLog(real_redis), Outbox(real_redis, settings)
    for outbound_id in ("o-open", "o-done"):
        messages.owe(OutboundSms(outbound_id, None, MessageKind.RELAY, "447700900100",
                                 "447400100001", "hi"))
    messages.mark_submitted("o-done", ["v1"], retain_body=False)
    later = time.time() + republish_after(settings) + 1
    assert sweeper.sweep(later).sends_requeued == ["o-open"]
    assert sweeper.sweep(later).sends_requeued == []  # pushed forward, not queued every sweep


def _entry_queue(real_redis, job):
    entry = real_redis.hget("smsproxy:pending:jobs", job)
    return None if entry is None else entry.partition("\n")[0]


def test_a_published_create_stays_in_the_outbox_until_settled(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    Publisher(settings, real_redis).publish(TaskName.CREATE_CONVERSATION, "c" * 32,
                                            job="create:" + "c" * 32)
    assert real_redis.llen("conversations") == 1
    assert _entry_queue(real_redis, "create:" + "c" * 32) == "conversations"
    Outbox(real_redis, settings).settle("create", "c" * 32)
    assert real_redis.hlen("smsproxy:pending:jobs") == 0
    assert real_redis.zcard("smsproxy:pending:due") == 0


def test_a_postponed_job_is_not_due_until_its_retry_is_past(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    outbox = Outbox(real_redis, settings)
    Publisher(settings, real_redis).publish(TaskName.CREATE_CONVERSATION, "d" * 32,
                                            job="create:" + "d" * 32)
    before = real_redis.zscore("smsproxy:pending:due", "create:" + "d" * 32)
    outbox.postpone("create", "d" * 32, 100)
    after = real_redis.zscore("smsproxy:pending:due", "create:" + "d" * 32)
    assert after >= before + 99
    outbox.postpone("create", "unknown", 100)  # only a tracked job is postponed
    assert real_redis.zscore("smsproxy:pending:due", "create:unknown") is None


def test_with_a_broker_apart_jobs_are_tracked_first_and_republished_to_the_broker(
    real_redis, redis_url, tmp_path
):
    from devtools.redis_server import RedisServer
    from shared.wiring import broker_redis

    broker = RedisServer(tmp_path / "broker").start()
    try:
        settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_BROKER_URL": broker.url,
                                      "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": "2",
                                      "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "1"})
        broker_client = broker_redis(settings)
        assert broker_client is not None
        Publisher(settings, real_redis).publish(TaskName.CREATE_CONVERSATION, "e" * 32,
                                                job="create:" + "e" * 32)
        assert real_redis.llen("conversations") == 0  # the store holds the entry only
        assert broker_client.llen("conversations") == 1
        assert _entry_queue(real_redis, "create:" + "e" * 32) == "conversations"
        broker_client.delete("conversations")  # lost by the broker
        outbox = Outbox(real_redis, settings, broker=broker_client)
        time.sleep(republish_after(settings) + 1.1)
        assert outbox.sweep(time.time()).republished == 1
        assert broker_client.llen("conversations") == 1
        assert real_redis.llen("conversations") == 0
    finally:
        broker.stop()


def test_worker_published_jobs_go_through_the_outbox(real_redis, redis_url):
    from workers.celery_app import make_celery
    from workers.runtime import CeleryQueue

    settings = Settings.from_env({"REDIS_URL": redis_url})
    outbox = Outbox(real_redis, settings)
    queue = CeleryQueue(make_celery(settings), settings, outbox=lambda: outbox)
    queue.enqueue(TaskName.FLUSH_CONCAT, ("g", "i"), countdown=5, job="flush:g:i")
    message = json.loads(real_redis.lpop("inbound"))
    assert message["headers"]["task"] == TaskName.FLUSH_CONCAT.value
    assert message["headers"]["eta"] is not None  # the countdown travels with it
    assert message["headers"]["argsrepr"] == "[…]"
    assert _entry_queue(real_redis, "flush:g:i") == "inbound"
    due = real_redis.zscore("smsproxy:pending:due", "flush:g:i")
    assert due >= time.time() + 5 + republish_after(settings) - 2


def _legacy_entry(client, job: str, queue: str) -> str:
    """An outbox entry as the release before framed entries stored it: the bare message."""
    message = json.dumps({"body": "e30=", "headers": {"id": job},
                          "properties": {"delivery_info": {"exchange": "", "routing_key": queue}}})
    client.hset("smsproxy:pending:jobs", job, message)
    client.zadd("smsproxy:pending:due", {job: 0})
    return message


def test_a_job_stored_by_the_previous_release_is_republished_to_its_queue(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    message = _legacy_entry(real_redis, "create:legacy", "conversations")
    outbox = Outbox(real_redis, settings)
    assert outbox.sweep(time.time()).republished == 1
    assert real_redis.lrange("conversations", 0, -1) == [message]
    # stored again as a framed entry, due later: the next sweep leaves it
    assert _entry_queue(real_redis, "create:legacy") == "conversations"
    assert outbox.sweep(time.time()).republished == 0


def test_with_a_broker_apart_a_previous_release_job_goes_to_the_broker(
    real_redis, redis_url, tmp_path
):
    from devtools.redis_server import RedisServer
    from shared.wiring import broker_redis

    broker = RedisServer(tmp_path / "broker").start()
    try:
        settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_BROKER_URL": broker.url})
        broker_client = broker_redis(settings)
        assert broker_client is not None
        message = _legacy_entry(real_redis, "create:legacy", "conversations")
        assert Outbox(real_redis, settings, broker=broker_client).sweep(
            time.time()).republished == 1
        # on the broker's queue, where a worker reads; none on the store's, where none does
        assert broker_client.lrange("conversations", 0, -1) == [message]
        assert real_redis.llen("conversations") == 0
        assert _entry_queue(real_redis, "create:legacy") == "conversations"
    finally:
        broker.stop()
