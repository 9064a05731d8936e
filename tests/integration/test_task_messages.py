"""What monitoring tools see of a task message published by the workers: never a number."""

from __future__ import annotations

import json

import pytest

from shared.settings import Settings
from workers.celery_app import make_celery

pytestmark = pytest.mark.integration

PAYLOAD = {"msisdn": "447400123456", "to": "447700900100", "messageId": "m1", "text": "hi Bob"}


def test_task_publishes_hide_their_arguments(real_redis, redis_url):
    app = make_celery(Settings.from_env({"REDIS_URL": redis_url}))
    app.loader.import_default_modules()
    relay = app.tasks["smsproxy.relay_inbound"]
    # Celery's own retry re-publishes through the task's apply_async, as beat does
    relay.apply_async((PAYLOAD,), countdown=0)
    relay.apply_async((PAYLOAD,), {"extra": "447400999999"})
    for _ in range(2):
        message = json.loads(real_redis.rpop("inbound"))
        headers = message["headers"]
        assert headers["argsrepr"] == "[…]"
        assert headers["kwargsrepr"] in {"{}", "{…}"}
        visible = json.dumps({k: v for k, v in message.items() if k != "body"})
        assert "447400" not in visible and "hi Bob" not in visible
