"""The direct door to the broker writes exactly what Celery itself would write."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from shared.jobs import TaskName
from shared.settings import Settings
from web.queue import Publisher, WebhookOutcome

pytestmark = pytest.mark.integration

NUMBER = "447400123456"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ORIGIN = re.compile(r"gen\d+@.+")
# Fields that differ per message (ids), per Celery app and thread (reply_to) or per process
# (origin): compared by shape only. Everything else must be equal.
PER_MESSAGE = {
    ("headers", "id"): UUID,
    ("headers", "root_id"): UUID,
    ("properties", "correlation_id"): UUID,
    ("properties", "delivery_tag"): UUID,
    ("properties", "reply_to"): UUID,
    ("headers", "origin"): ORIGIN,
}


def _decode(raw: str) -> dict[str, Any]:
    message = json.loads(raw)
    assert message["properties"]["body_encoding"] == "base64"
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def _fields(message: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """Every leaf of a decoded message by its path (the body compared whole)."""
    fields: dict[tuple[str, ...], Any] = {}
    for part, value in message.items():
        if isinstance(value, dict):
            fields.update({(part, *path): leaf for path, leaf in _fields(value).items()})
        else:
            fields[(part,)] = value
    return fields


def test_message_matches_celerys_own_field_by_field(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url.replace("127.0.0.1", "localhost"),
                                  "CELERY_BROKER_URL": redis_url})
    # without the store's client the Publisher always goes through Celery: app.send_task
    celery_path = Publisher(settings)
    direct = Publisher(settings, real_redis)
    assert direct.atomic_webhooks and not celery_path.atomic_webhooks
    payload = {"messageId": "m1", "msisdn": NUMBER, "text": "hi"}
    celery_path.publish(TaskName.RELAY_INBOUND, payload)
    direct.publish(TaskName.RELAY_INBOUND, payload)
    ours, theirs = (_fields(_decode(raw)) for raw in real_redis.lrange("inbound", 0, -1))

    assert ours.keys() == theirs.keys()
    for path in ours:
        if path == ("properties", "smsproxy_published_at"):
            # when each was published: a time, not a value to match
            assert isinstance(ours[path], float) and isinstance(theirs[path], float), path
        elif path in PER_MESSAGE:
            assert PER_MESSAGE[path].fullmatch(ours[path]), path
            assert PER_MESSAGE[path].fullmatch(theirs[path]), path
        else:
            assert ours[path] == theirs[path], path
    for message in (ours, theirs):
        task_id = message[("headers", "id")]
        assert message[("headers", "root_id")] == message[("properties", "correlation_id")] \
            == task_id
        assert message[("body",)] == [[payload], {}, {"callbacks": None, "errbacks": None,
                                                      "chain": None, "chord": None}]
        # no numbers for monitoring tools to show, on either path
        assert message[("headers", "argsrepr")] == "[…]"
        assert message[("headers", "kwargsrepr")] == "{}"
        assert NUMBER not in json.dumps({str(k): v for k, v in message.items() if k != ("body",)})
    # the same process: the same origin (from Celery's own node name)
    assert ours[("headers", "origin")] == theirs[("headers", "origin")]


def test_message_without_payload_matches_too(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    Publisher(settings).publish(TaskName.MAINTAIN_POOL)
    Publisher(settings, real_redis).publish(TaskName.MAINTAIN_POOL)
    ours, theirs = (_fields(_decode(raw)) for raw in real_redis.lrange("pool", 0, -1))
    published = ("properties", "smsproxy_published_at")
    assert {path: value for path, value in ours.items() if path not in {*PER_MESSAGE, published}} \
        == {path: value for path, value in theirs.items() if path not in {*PER_MESSAGE, published}}
    assert ours[("headers", "argsrepr")] == "[]"


def test_webhook_enqueue_is_once_per_message_id(real_redis, redis_url):
    publisher = Publisher(Settings.from_env({"REDIS_URL": redis_url}), real_redis)
    assert publisher.atomic_webhooks
    outcomes = [publisher.enqueue_webhook("inbound", "m-7", TaskName.RELAY_INBOUND,
                                          {"messageId": "m-7"}, 60) for _ in range(3)]
    assert outcomes == [WebhookOutcome.QUEUED, WebhookOutcome.DUPLICATE, WebhookOutcome.DUPLICATE]
    assert real_redis.llen("inbound") == 1
    assert real_redis.ttl("smsproxy:seen:inbound:m-7") > 0
    # the outbox keeps the queue beside the message it holds
    queue, message = real_redis.hget("smsproxy:pending:jobs", "inbound:m-7").split("\n", 1)
    assert (queue, message) == ("inbound", real_redis.lindex("inbound", 0))


def test_broker_on_another_database_takes_celerys_path(real_redis, redis_url):
    other_db = redis_url.rsplit("/", 1)[0] + "/1"
    publisher = Publisher(Settings.from_env({"REDIS_URL": redis_url,
                                             "CELERY_BROKER_URL": other_db}), real_redis)
    assert not publisher.atomic_webhooks
