import time

import pytest

from shared.jobs import TaskName
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.doubles import BadPublisher

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


def test_delivery_receipt_enqueued_per_part_and_status(client, publisher):
    receipt = {"msisdn": "447400123456", "to": "447700900100", "messageId": "v-1",
               "status": "delivered", "err-code": "0", "client-ref": "relay-m-1"}
    assert client.post("/webhooks/delivery-receipt", data=receipt).status_code == 200
    assert client.post("/webhooks/delivery-receipt", data=receipt).json["status"] == "duplicate"
    assert client.post("/webhooks/delivery-receipt", data={**receipt, "messageId": "v-2"}
                       ).status_code == 200
    assert [t for t, _ in publisher.published] == [TaskName.RECORD_RECEIPT] * 2
    bad = client.post("/webhooks/delivery-receipt", data={"msisdn": "447400123456"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "messageId"


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
