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
from shared.settings import Settings
from shared.sweeper import Sweeper, outbox_entry, republish_after
from web.queue import Publisher

pytestmark = pytest.mark.integration


def test_lost_job_is_republished_and_settled_job_is_not(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url,
                                  "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": "2",
                                  "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "1"})
    publisher = Publisher(settings, real_redis)
    sweeper = Sweeper(real_redis, settings)
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
    assert Sweeper(real_redis, settings).sweep(time.time()).republished == 1
    assert real_redis.lrange("elsewhere", 0, -1) == [message]
    assert real_redis.llen("inbound") == 0


def test_job_stored_by_the_previous_release_is_republished_once(real_redis, redis_url):
    # then the outbox held the bare message; its queue comes from the message, once
    settings = Settings.from_env({"REDIS_URL": redis_url})
    publisher, sweeper = Publisher(settings, real_redis), Sweeper(real_redis, settings)
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
    messages, sweeper = MessageLog(real_redis), Sweeper(real_redis, settings)
    for outbound_id in ("o-open", "o-done"):
        messages.owe(OutboundSms(outbound_id, None, MessageKind.RELAY, "447700900100",
                                 "447400100001", "hi"))
    messages.mark_submitted("o-done", ["v1"], retain_body=False)
    later = time.time() + republish_after(settings) + 1
    assert sweeper.sweep(later).sends_requeued == ["o-open"]
    assert sweeper.sweep(later).sends_requeued == []  # pushed forward, not queued every sweep
