"""The direct door to the broker writes exactly what Celery itself would write."""

from __future__ import annotations

import base64
import json

import pytest

from shared.jobs import TaskName
from shared.settings import Settings
from web.queue import Publisher, WebhookOutcome, celery_envelope

pytestmark = pytest.mark.integration


def _decode(raw: str) -> dict:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_envelope_matches_celerys_own(real_redis, redis_url):
    # Celery's own path: the broker URL names the same Redis differently
    celery_path = Publisher(Settings.from_env({
        "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url.replace("127.0.0.1", "localhost"),
    }))
    celery_path.publish(TaskName.RELAY_INBOUND, {"messageId": "m1"})
    theirs = _decode(real_redis.lpop("inbound"))
    ours = _decode(celery_envelope(TaskName.RELAY_INBOUND, {"messageId": "m1"}))
    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    assert ours["body"] == theirs["body"]
    for field in ("lang", "task", "retries", "timelimit", "eta", "expires", "kwargsrepr"):
        assert ours["headers"][field] == theirs["headers"][field]
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    assert ours["headers"]["argsrepr"] == "[…]"  # no numbers for monitoring tools to show


def test_webhook_enqueue_is_once_per_message_id(real_redis, redis_url):
    publisher = Publisher(Settings.from_env({"REDIS_URL": redis_url}), real_redis)
    assert publisher.atomic_webhooks
    outcomes = [publisher.enqueue_webhook("inbound", "m-7", TaskName.RELAY_INBOUND,
                                          {"messageId": "m-7"}, 60) for _ in range(3)]
    assert outcomes == [WebhookOutcome.QUEUED, WebhookOutcome.DUPLICATE, WebhookOutcome.DUPLICATE]
    assert real_redis.llen("inbound") == 1
    assert real_redis.ttl("smsproxy:seen:inbound:m-7") > 0
