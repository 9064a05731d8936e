"""A webhook answers 200 only once its job is in the broker, and 503 quickly when Redis is down.

Real redis-servers of our own (append-only, as in production), the real Publisher (Celery on
kombu's Redis transport) and the real redis-py client; Redis is stopped, killed or frozen
(SIGSTOP: connections stay open and nothing answers) under the app.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devtools.redis_server import RedisServer
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TIMEOUT = 0.5  # SMSPROXY_PUBLISH_TIMEOUT_SECONDS for these tests
# Generous for a noisy 2-core machine: the design target is TIMEOUT plus a little.
BOUND = 3 * TIMEOUT
# The dedupe claim left by an attempt that hung lives max(1, 5 x TIMEOUT) s (web/webhooks.py).
CLAIM_SECONDS = max(1.0, 5 * TIMEOUT)
QUEUE = "inbound"  # kombu's Redis transport keeps the queue as a list of this name


def _server(tmp_path: Path, name: str) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / name).start()
    try:
        yield server
    finally:
        server.stop()  # resumes a paused server first; a no-op once stopped or killed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path, "store")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path, "broker")


@pytest.fixture
def make_web(make_settings: Callable[..., Any]) -> Callable[..., FlaskClient]:
    def build(store: RedisServer, broker: RedisServer | None = None) -> FlaskClient:
        env = {"REDIS_URL": store.url, "SMSPROXY_PUBLISH_TIMEOUT_SECONDS": str(TIMEOUT)}
        if broker is not None:
            env["CELERY_BROKER_URL"] = broker.url
        return create_app(make_settings(**env)).test_client()

    return build


def post(web: FlaskClient, message_id: str) -> tuple[TestResponse, float]:
    form = {"msisdn": "447400123456", "to": "447700900100", "messageId": message_id, "text": "hi"}
    started = time.monotonic()
    response = web.post("/webhooks/inbound-sms", data=form)
    return response, time.monotonic() - started


def assert_503(response: TestResponse, elapsed: float, code: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.is_json and response.json is not None
    assert response.json["error"]["code"] == code
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < BOUND, f"503 took {elapsed:.2f} s"


def queued_ids(server: RedisServer) -> list[str]:
    """The messageIds of the jobs in the inbound queue, oldest first."""
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        raw_messages = client.lrange(QUEUE, 0, -1)
    finally:
        client.close()
    ids = []
    for raw in reversed(raw_messages):  # LPUSH: newest first
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0]["messageId"])
    return ids


def retry_until_accepted(web: FlaskClient, message_id: str) -> TestResponse:
    """Vonage's retries: a leftover claim answers 503 "in_progress" until it expires."""
    deadline = time.monotonic() + CLAIM_SECONDS + 3.0
    while True:
        response, elapsed = post(web, message_id)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        assert_503(response, elapsed, "in_progress")
        time.sleep(0.25)


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_redis_down_answers_503_fast_and_the_retry_is_taken(
    store: RedisServer, make_web: Callable[..., FlaskClient], outage: str
) -> None:
    web = make_web(store)
    assert post(web, "before")[0].status_code == 200

    store.stop() if outage == "stop" else store.kill()
    for message_id in ("down-1", "down-2"):
        response, elapsed = post(web, message_id)
        # one Redis is store and broker: the one atomic enqueue is the first command to fail
        assert_503(response, elapsed, "queue_unavailable")

    store.start()  # same port and data directory: the append-only file brings the queue back
    # The first request after the restart meets the pooled connections Redis dropped.
    response, _ = post(web, "after")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"status": "queued"}
    # Vonage retries what got a 503: the dedupe marker was never set, or was forgotten.
    assert post(web, "down-1")[0].json == {"status": "queued"}
    assert post(web, "down-1")[0].json == {"status": "duplicate"}
    assert queued_ids(store) == ["before", "after", "down-1"]


def test_frozen_redis_answers_503_in_bounded_time_and_nothing_is_lost(
    store: RedisServer, make_web: Callable[..., FlaskClient]
) -> None:
    web = make_web(store)
    assert post(web, "before")[0].status_code == 200

    store.pause()
    try:
        # The first reuses a pooled connection (the whole enqueue script is on the wire and
        # runs on SIGCONT); the second opens a new one (the kernel accepts it; the handshake
        # is never answered, so nothing of it runs).
        for message_id in ("hung-1", "hung-2"):
            response, elapsed = post(web, message_id)
            assert_503(response, elapsed, "queue_unavailable")
    finally:
        store.resume()

    response, _ = post(web, "after")
    assert response.status_code == 200, response.get_data(as_text=True)
    # hung-1's script ran, all of it, when Redis resumed: its job is queued with its marker
    assert queued_ids(store) == ["before", "hung-1", "after"]

    # Vonage retries both 503s: hung-1 is a duplicate of a queued job, hung-2 is taken now.
    assert post(web, "hung-1")[0].json == {"status": "duplicate"}
    assert post(web, "hung-2")[0].json == {"status": "queued"}
    assert queued_ids(store) == ["before", "hung-1", "after", "hung-2"]  # each exactly once


def test_broker_down_with_the_store_up(
    store: RedisServer, broker: RedisServer, make_web: Callable[..., FlaskClient]
) -> None:
    """CELERY_BROKER_URL apart from REDIS_URL: the publish itself fails, refused or hung."""
    web = make_web(store, broker)
    assert post(web, "before")[0].status_code == 200

    broker.stop()
    response, elapsed = post(web, "refused")
    assert_503(response, elapsed, "queue_unavailable")
    broker.start()
    assert post(web, "after-restart")[0].status_code == 200
    # Nothing reached the broker, so the claim was dropped and the retry is taken at once.
    assert post(web, "refused")[0].json == {"status": "queued"}
    assert queued_ids(broker) == ["before", "after-restart", "refused"]

    broker.pause()
    try:
        response, elapsed = post(web, "hung")
        assert_503(response, elapsed, "queue_unavailable")
    finally:
        broker.resume()
    assert post(web, "after-resume")[0].status_code == 200
    # The LPUSH was on the wire when the publish timed out: Redis ran it on SIGCONT. The 503
    # was still right (we could not know), and the claim holds Vonage's retry back meanwhile.
    assert queued_ids(broker)[-2:] == ["hung", "after-resume"]
    response, elapsed = post(web, "hung")
    assert_503(response, elapsed, "in_progress")
