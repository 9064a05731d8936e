import json
import time

import fakeredis
import pytest

from shared.jobs import TaskName
from shared.keys import Keys
from shared.messages import MessageLog, WebhookClaim
from shared.metrics import WEBHOOKS, legacy_series, series_key
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.doubles import BadPublisher, sent_relay
from web.app import create_app

INBOUND = {"msisdn": "447400123456", "to": "447700900100", "messageId": "m-1", "text": "hi"}


def test_bare_get_probe_answers_200(client):
    for path in ("/webhooks/inbound-sms", "/webhooks/delivery-receipt"):
        assert client.get(path).status_code == 200


@pytest.mark.parametrize("style", ["query", "form", "json"])
def test_inbound_accepted_in_every_format_and_enqueued(client, publisher, style):
    if style == "query":
        response = client.get("/webhooks/inbound-sms", query_string=INBOUND)
    elif style == "form":
        response = client.post("/webhooks/inbound-sms", data=INBOUND)
    else:
        response = client.post("/webhooks/inbound-sms", json=INBOUND)
    assert response.status_code == 200
    assert response.json == {"status": "queued"}
    [(task, payload)] = publisher.published
    assert task is TaskName.RELAY_INBOUND
    assert payload["msisdn"] == "447400123456" and payload["messageId"] == "m-1"


@pytest.mark.parametrize("missing", ["msisdn", "to", "messageId"])
def test_missing_field_is_400_naming_it(client, publisher, missing):
    params = {k: v for k, v in INBOUND.items() if k != missing}
    response = client.post("/webhooks/inbound-sms", data=params)
    assert response.status_code == 400
    assert response.json["error"]["field"] == missing
    assert missing in response.json["error"]["message"]
    assert publisher.published == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("{not json", "application/json"), ("[1,2]", "application/json"),
     ('{"msisdn": {"a": 1}}', "application/json")],
)
def test_malformed_json_is_400(client, body, content_type):
    response = client.post("/webhooks/inbound-sms", data=body, content_type=content_type)
    assert response.status_code == 400
    assert response.is_json


@pytest.mark.parametrize(
    ("field", "value"),
    [("msisdn", "not-a-number"), ("to", "+44abc"), ("concat-part", "x")],
)
def test_malformed_field_is_400(client, field, value):
    params = {**INBOUND, "concat": "true", "concat-ref": "1", "concat-total": "2",
              "concat-part": "1", field: value}
    response = client.post("/webhooks/inbound-sms", data=params)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_duplicate_message_id_is_acknowledged_but_enqueued_once(client, publisher):
    for _ in range(3):
        assert client.post("/webhooks/inbound-sms", data=INBOUND).status_code == 200
    assert len(publisher.published) == 1


def test_broker_down_answers_503_and_the_retry_is_taken(make_client, publisher):
    down = make_client(publisher=BadPublisher())
    response = down.post("/webhooks/inbound-sms", data=INBOUND)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "queue_unavailable"
    # Vonage retries once the broker is back: the same messageId must be accepted then.
    up = make_client(publisher=publisher)
    assert up.post("/webhooks/inbound-sms", data=INBOUND).json == {"status": "queued"}


def test_redis_down_answers_503(make_settings, publisher):
    import redis

    from web.app import create_app

    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)
    app = create_app(make_settings(), redis_client=dead, publisher=publisher)
    response = app.test_client().post("/webhooks/inbound-sms", data=INBOUND)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "store_unavailable"


@pytest.mark.parametrize("method", list(SignatureMethod))
def test_signed_webhooks(make_client, publisher, method):
    client = make_client(VONAGE_SIGNATURE_SECRET="s3cret", VONAGE_SIGNATURE_METHOD=method.value)
    params = {**INBOUND, "timestamp": str(int(time.time())), "nonce": "n"}
    signed = {**params, "sig": sign(params, "s3cret", method)}
    assert client.post("/webhooks/inbound-sms", data=signed).status_code == 200
    assert client.post("/webhooks/inbound-sms", json={**signed, "messageId": "m-2",
                                                      }).status_code == 401
    unsigned = client.post("/webhooks/inbound-sms", data={"to": "1"})
    assert unsigned.status_code == 401  # judged before any field
    stale = {**params, "timestamp": str(int(time.time()) - 600)}
    stale["sig"] = sign(stale, "s3cret", method)
    assert client.get("/webhooks/inbound-sms", query_string=stale).status_code == 401
    assert len(publisher.published) == 1


def _counted(fake_redis, name: str, labels: dict[str, str] | None = None) -> int:
    return int(fake_redis.hget(Keys().metrics(), series_key(name, labels)) or 0)


def test_delivery_receipt_recorded_by_web_once_per_part_and_status(client, publisher,
                                                                     fake_redis):
    messages = sent_relay(fake_redis, "relay-m-1", ["v-1", "v-2"])
    receipt = {"msisdn": "447400123456", "to": "447700900100", "messageId": "v-1",
               "status": "delivered", "err-code": "0", "client-ref": "relay-m-1"}
    first = client.post("/webhooks/delivery-receipt", data=receipt)
    assert first.status_code == 200 and first.json == {"status": "recorded"}
    assert messages.outbound_state("relay-m-1") == "submitted"  # one part of two
    assert client.post("/webhooks/delivery-receipt", data=receipt).json["status"] == "duplicate"
    assert client.post("/webhooks/delivery-receipt", data={**receipt, "messageId": "v-2"}
                       ).status_code == 200
    assert messages.outbound_state("relay-m-1") == "delivered"
    assert publisher.published == []  # no task: the worker has nothing left to do for them
    accepted = {"kind": "receipt", "outcome": "accepted"}
    assert _counted(fake_redis, WEBHOOKS, accepted) == 2
    assert _counted(fake_redis, WEBHOOKS, {**accepted, "outcome": "duplicate"}) == 1
    bad = client.post("/webhooks/delivery-receipt", data={"msisdn": "447400123456"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "messageId"


def test_a_receipt_for_no_send_of_ours_is_acknowledged_and_counted_unmatched(client,
                                                                            fake_redis):
    receipt = {"msisdn": "447400123456", "messageId": "v-9", "status": "delivered",
               "client-ref": "relay-never-sent"}
    assert client.post("/webhooks/delivery-receipt", data=receipt).json == {"status": "recorded"}
    assert fake_redis.exists(Keys().outbound("relay-never-sent")) == 0  # no half a record
    assert _counted(fake_redis, *legacy_series("smsproxy.receipts.unmatched")) == 1


def test_a_newer_status_is_not_undone_by_a_retried_older_one(client, fake_redis):
    messages = sent_relay(fake_redis, "relay-m-2", ["v-3"])
    receipt = {"msisdn": "447400123456", "messageId": "v-3", "client-ref": "relay-m-2"}
    for status in ("accepted", "delivered", "accepted"):  # Vonage retries the first one late
        assert client.post("/webhooks/delivery-receipt",
                           data={**receipt, "status": status}).status_code == 200
    assert messages.outbound_state("relay-m-2") == "delivered"
    assert json.loads(fake_redis.hget(Keys().outbound("relay-m-2"), "receipts")) == {
        "v-3": "delivered"}


def test_a_receipt_claimed_by_the_previous_releases_queued_path_is_in_progress(client,
                                                                               fake_redis):
    """A receipt being queued by the two-step path of the previous release at the upgrade
    holds a short claim; its retry waits for it as it did, rather than record it twice."""
    messages = MessageLog(fake_redis)
    assert messages.claim_webhook("receipt", "v-4:delivered", 5000) is WebhookClaim.CLAIMED
    response = client.post("/webhooks/delivery-receipt",
                           data={"msisdn": "447400123456", "messageId": "v-4",
                                 "status": "delivered", "client-ref": "relay-m-4"})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    messages.confirm_webhook("receipt", "v-4:delivered", 60)  # the old release queued it
    assert client.post("/webhooks/delivery-receipt",
                       data={"msisdn": "447400123456", "messageId": "v-4",
                             "status": "delivered"}).json["status"] == "duplicate"


def test_receipts_are_queued_as_before_when_replicas_must_hold_them(make_client, publisher,
                                                                    fake_redis):
    client = make_client(SMSPROXY_MIN_REPLICAS_ACKED="1")
    receipt = {"msisdn": "447400123456", "messageId": "v-5", "status": "delivered",
               "client-ref": "relay-m-5"}
    assert client.post("/webhooks/delivery-receipt", data=receipt).json == {"status": "queued"}
    [(task, payload)] = publisher.published
    assert task is TaskName.RECORD_RECEIPT and payload["messageId"] == "v-5"


def test_a_receipt_answers_503_while_the_store_is_down(make_settings, publisher):
    server = fakeredis.FakeServer()
    store = fakeredis.FakeRedis(server=server, decode_responses=True)
    client = create_app(make_settings(), redis_client=store, publisher=publisher).test_client()
    receipt = {"msisdn": "447400123456", "messageId": "v-6", "status": "delivered"}
    server.connected = False
    response = client.post("/webhooks/delivery-receipt", data=receipt)
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    server.connected = True
    assert client.post("/webhooks/delivery-receipt", data=receipt).json == {"status": "recorded"}


def test_oversized_body_is_413_json(client):
    response = client.post("/webhooks/inbound-sms", data={"text": "x" * 70000})
    assert response.status_code == 413
    assert response.is_json


def test_every_acknowledgement_is_what_jsonify_writes(client):
    # the bodies are encoded once per app and reused: each answer must still be jsonify's
    answers = [client.post("/webhooks/inbound-sms", data={**INBOUND, "messageId": m})
               for m in ("m-a", "m-b", "m-a", "m-a")]
    with client.application.app_context():
        from flask import jsonify

        queued, duplicate = (jsonify({"status": s}) for s in ("queued", "duplicate"))
    for answer, expected in zip(answers, (queued, queued, duplicate, duplicate), strict=True):
        assert answer.status_code == 200
        assert answer.get_data() == expected.get_data()
        assert answer.headers["Content-Type"] == expected.headers["Content-Type"]
        assert answer.headers["Content-Length"] == expected.headers["Content-Length"]
