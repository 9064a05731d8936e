"""A delivery receipt is recorded by web itself before its 200, once, and a store outage is a 503
whose retry records it once.

A real redis-server of our own (append-only, as in production), the real app with its real
Publisher and redis-py client; Redis is stopped, killed or frozen (SIGSTOP) under the app. A
receipt queued by the previous release (`record_receipt` on `receipts`) is still the worker's:
web answers its retry `duplicate` (tests/workers/test_record_receipt.py runs the task).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devtools.redis_server import RedisServer
from shared.jobs import TaskName
from shared.keys import Keys
from shared.metrics import WEBHOOKS, series_key
from tests.doubles import sent_relay
from web.app import create_app
from web.queue import Publisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TIMEOUT = 0.5  # SMSPROXY_PUBLISH_TIMEOUT_SECONDS (and the store's socket timeout) here
BOUND = 3 * TIMEOUT  # generous for a noisy 2-core machine
ACCEPTED = series_key(WEBHOOKS, {"kind": "receipt", "outcome": "accepted"})
DUPLICATE = series_key(WEBHOOKS, {"kind": "receipt", "outcome": "duplicate"})


@pytest.fixture
def make_web(make_settings: Callable[..., Any]) -> Callable[[RedisServer], FlaskClient]:
    def build(store: RedisServer) -> FlaskClient:
        settings = make_settings(REDIS_URL=store.url,
                                 SMSPROXY_PUBLISH_TIMEOUT_SECONDS=str(TIMEOUT))
        return create_app(settings).test_client()

    return build


def _client(store: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(store.url, decode_responses=True)


def post(web: FlaskClient, vonage_id: str, outbound_id: str) -> tuple[TestResponse, float]:
    form = {"msisdn": "447400123456", "to": "447700900100", "messageId": vonage_id,
            "status": "delivered", "err-code": "0", "client-ref": outbound_id}
    started = time.monotonic()
    response = web.post("/webhooks/delivery-receipt", data=form)
    return response, time.monotonic() - started


def _receipts(client: redis.Redis, outbound_id: str) -> dict[str, str]:
    found: dict[str, str] = json.loads(client.hget(Keys().outbound(outbound_id), "receipts")
                                       or "{}")
    return found


def test_a_receipt_reaches_its_record_before_the_200_and_queues_nothing(store, make_web):
    client = _client(store)
    messages = sent_relay(client, "relay-r-1", ["v-1", "v-2"])
    web = make_web(store)
    response, _ = post(web, "v-1", "relay-r-1")
    # the 200 came after the record changed: nothing is left for anyone to do
    assert response.status_code == 200 and response.json == {"status": "recorded"}
    assert _receipts(client, "relay-r-1") == {"v-1": "delivered"}
    assert messages.outbound_state("relay-r-1") == "submitted"
    assert post(web, "v-1", "relay-r-1")[0].json == {"status": "duplicate"}
    assert post(web, "v-2", "relay-r-1")[0].json == {"status": "recorded"}
    assert messages.outbound_state("relay-r-1") == "delivered"
    assert client.llen("receipts") == 0
    assert client.hlen(Keys().pending_jobs()) == 0  # no outbox entry: no job to lose
    assert client.hget(Keys().metrics(), ACCEPTED) == "2"
    assert client.hget(Keys().metrics(), DUPLICATE) == "1"


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_store_down_answers_503_fast_and_the_retry_records_it_once(store, make_web, outage):
    messages = sent_relay(_client(store), "relay-r-2", ["v-3"])
    web = make_web(store)
    store.stop() if outage == "stop" else store.kill()
    response, elapsed = post(web, "v-3", "relay-r-2")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json is not None and response.json["error"]["code"] == "store_unavailable"
    assert elapsed < BOUND, f"503 took {elapsed:.2f} s"
    store.start()  # same port and data directory: the append-only file brings the record back
    client = _client(store)
    assert post(web, "v-3", "relay-r-2")[0].json == {"status": "recorded"}  # Vonage's retry
    assert post(web, "v-3", "relay-r-2")[0].json == {"status": "duplicate"}  # and another
    assert messages.outbound_state("relay-r-2") == "delivered"
    assert _receipts(client, "relay-r-2") == {"v-3": "delivered"}
    assert client.hget(Keys().metrics(), ACCEPTED) == "1"


def test_frozen_store_answers_503_in_bounded_time_and_the_retry_records_it_once(store,
                                                                                make_web):
    client = _client(store)
    messages = sent_relay(client, "relay-r-3", ["v-4"])
    web = make_web(store)
    store.pause()  # connections stay open, nothing answers
    try:
        response, elapsed = post(web, "v-4", "relay-r-3")
    finally:
        store.resume()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert elapsed < BOUND, f"503 took {elapsed:.2f} s"
    # whatever of the attempt ran when Redis resumed, the retry is recorded, and only once
    retried = post(web, "v-4", "relay-r-3")[0]
    assert retried.status_code == 200 and retried.json is not None
    assert retried.json["status"] in {"recorded", "duplicate"}
    assert post(web, "v-4", "relay-r-3")[0].json == {"status": "duplicate"}
    assert messages.outbound_state("relay-r-3") == "delivered"
    assert _receipts(client, "relay-r-3") == {"v-4": "delivered"}
    assert int(client.hget(Keys().metrics(), ACCEPTED) or 0) <= 1


def test_a_receipt_the_previous_release_queued_is_left_to_the_worker(store, make_web,
                                                                     make_settings):
    """The previous release's web queued `record_receipt` (its atomic enqueue, marker `queued`);
    Vonage's retry of the same receipt reaching the new web is a duplicate, and the job stays on
    `receipts` for the worker."""
    settings = make_settings(REDIS_URL=store.url)
    client = _client(store)
    old_web = Publisher(settings, client)
    payload = {"messageId": "v-5", "status": "delivered", "err-code": "0",
               "client-ref": "relay-r-5", "msisdn": "447400123456"}
    old_web.enqueue_webhook("receipt", "v-5:delivered", TaskName.RECORD_RECEIPT, payload, 60)
    assert post(make_web(store), "v-5", "relay-r-5")[0].json == {"status": "duplicate"}
    assert client.llen("receipts") == 1
