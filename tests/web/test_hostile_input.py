"""Hostile input classes against the webhooks and /v1, through Flask's test client: deep
nesting, non-ASCII digits, NUL bytes, invalid UTF-8, duplicate JSON keys, oversized headers.
Each is a 4xx naming the problem (or an acknowledgement), never a 5xx. The same classes run
against real processes in tests/reliability/test_fuzz.py."""

from __future__ import annotations

import json

import pytest

from tests.web.conftest import AUTH

INBOUND = {"msisdn": "447400123456", "to": "447700900100", "messageId": "0A0000000123ABCD1",
           "text": "hi"}
RECEIPT = {"messageId": "0A0000001234567B", "status": "delivered", "msisdn": "447400123456"}
WEBHOOKS = {"/webhooks/inbound-sms": INBOUND, "/webhooks/delivery-receipt": RECEIPT}
CREATE = {"participants": [{"number": "+447400123456"}, {"number": "+447400654321"}]}
JSON = "application/json"


def _error(response, status: int = 400) -> dict[str, str]:
    assert response.status_code == status, response.get_data()[:300]
    error: dict[str, str] = response.get_json()["error"]
    return error


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- deep nesting -------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
@pytest.mark.parametrize("body", ["[" * 5000, '{"a":' * 5000, _nested(33),
                                  '{"msisdn": ' + _nested(100) + "}"])
def test_deeply_nested_webhook_body_is_400(client, publisher, path, body):
    error = _error(client.post(path, data=body, content_type=JSON))
    assert "deeper than 32 levels" in error["message"]
    assert publisher.published == []


def test_deeply_nested_webhook_body_is_400_before_the_signature(make_client):
    signed = make_client(VONAGE_SIGNATURE_SECRET="s3cret")
    error = _error(signed.post("/webhooks/inbound-sms", data="[" * 5000, content_type=JSON))
    assert "deeper than 32 levels" in error["message"]


@pytest.mark.parametrize("body", ["[" * 5000, '{"participants":' * 3000,
                                  json.dumps({**CREATE, "metadata": {"a": json.loads(
                                      _nested(40))}})])
def test_deeply_nested_create_is_400_naming_the_body(client, publisher, body):
    error = _error(client.post("/v1/conversations", data=body, content_type=JSON, headers=AUTH))
    assert error["code"] == "invalid_json" and error["field"] == "body"
    assert "deeper than 32 levels" in error["message"]
    assert publisher.published == []


# -- non-ASCII digits -----------------------------------------------------------------------

ARABIC_INDIC = "+٤٤٧٤٠٠١٢٣٤٥٦"  # phonenumbers reads it as +447400123456


@pytest.mark.parametrize("number", [ARABIC_INDIC, "+４４７４００１２３４５６", "+44 ٧٤٠٠ 123456"])
def test_a_participant_number_in_other_digits_is_400(client, publisher, number):
    body = {"participants": [{"number": number}, {"number": "+447400654321"}]}
    error = _error(client.post("/v1/conversations", json=body, headers=AUTH))
    assert error["field"] == "participants[0].number" and "ASCII digits" in error["message"]
    assert publisher.published == []


@pytest.mark.parametrize(("query", "field"), [({"participant": ARABIC_INDIC}, "participant"),
                                              ({"limit": "٣"}, "limit"),
                                              ({"limit": "²"}, "limit")])
def test_a_query_in_other_digits_is_400(client, query, field):
    error = _error(client.get("/v1/conversations", query_string=query, headers=AUTH))
    assert error["field"] == field


@pytest.mark.parametrize(("path", "field", "value"), [
    ("/webhooks/inbound-sms", "msisdn", "٤٤٧٤٠٠١٢٣٤٥٦"),
    ("/webhooks/inbound-sms", "to", "４４７７００９００１００"),
    ("/webhooks/inbound-sms", "messageId", "٠A٠٠٠٠"),
    ("/webhooks/delivery-receipt", "msisdn", "٤٤٧٤٠٠١٢٣٤٥٦"),
])
def test_webhook_digits_in_other_scripts_are_400(client, path, field, value):
    error = _error(client.post(path, json={**WEBHOOKS[path], field: value}))
    assert error["field"] == field


def test_a_conversation_id_in_other_digits_is_not_found(client):
    assert client.get("/v1/conversations/" + "٣" * 32, headers=AUTH).status_code == 404


# -- NUL bytes ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
@pytest.mark.parametrize("style", ["query", "form", "json"])
@pytest.mark.parametrize("field", ["msisdn", "messageId"])
def test_a_nul_in_a_webhook_id_or_number_is_400(client, path, style, field):
    params = {**WEBHOOKS[path], field: WEBHOOKS[path][field][:4] + "\x00" + "1"}
    if style == "query":
        response = client.get(path, query_string=params)
    elif style == "form":
        response = client.post(path, data=params)
    else:
        response = client.post(path, json=params)
    assert _error(response)["field"] == field


def test_a_nul_in_a_text_or_a_key_is_never_a_5xx(client):
    for body in ({**INBOUND, "text": "a\x00b"}, {**INBOUND, "\x00": "x"}):
        assert client.post("/webhooks/inbound-sms", json=body).status_code < 500


@pytest.mark.parametrize("body", [
    {"participants": [{"number": "+44740012\x003456"}, {"number": "+447400654321"}]},
    {**CREATE, "metadata": {"\x00": "\x00"}},
    {**CREATE, "intro_text": "\x00"},
])
def test_nul_in_a_create_is_never_a_5xx(client, body):
    response = client.post("/v1/conversations", json=body, headers=AUTH)
    assert response.status_code in (202, 400), response.get_data()[:300]


def test_nul_in_paths_and_queries_is_never_a_5xx(client):
    assert client.get("/v1/conversations/%00", headers=AUTH).status_code == 404
    assert client.get("/v1/conversations?status=%00", headers=AUTH).status_code == 400
    assert client.get("/webhooks/inbound-sms?msisdn=%00").status_code == 400


# -- invalid UTF-8 --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
def test_a_webhook_json_body_that_is_not_utf8_is_400(client, path):
    body = json.dumps(WEBHOOKS[path]).encode().replace(b"hi", b"h\xff") + b"\xc3"
    assert "not UTF-8" in _error(client.post(path, data=body, content_type=JSON))["message"]


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
def test_invalid_utf8_in_a_form_or_query_is_never_a_5xx(client, path):
    form = b"msisdn=447400123456&to=447700900100&messageId=\xff\xfe&status=delivered"
    response = client.post(path, data=form, content_type="application/x-www-form-urlencoded")
    assert _error(response)["code"] == "invalid_field"  # werkzeug drops such a form whole
    query = "msisdn=447400123456&to=447700900100&messageId=%FF%FE&status=delivered"
    assert _error(client.get(f"{path}?{query}"))["field"] == "messageId"


def test_a_create_body_that_is_not_utf8_is_400(client):
    body = json.dumps(CREATE).encode()[:-1] + b', "metadata": {"a": "\xff"}}'
    error = _error(client.post("/v1/conversations", data=body, content_type=JSON, headers=AUTH))
    assert error["field"] == "body" and "not UTF-8" in error["message"]
    assert client.get("/v1/conversations?participant=%FF", headers=AUTH).status_code == 400


# -- duplicate JSON keys --------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
def test_a_webhook_repeating_a_key_is_400(client, publisher, path):
    body = json.dumps(WEBHOOKS[path])[:-1] + ', "messageId": "0A00000000000000"}'
    error = _error(client.post(path, data=body, content_type=JSON))
    assert "repeats the key 'messageId'" in error["message"]
    assert publisher.published == []


def test_a_create_repeating_a_key_is_400(client, publisher):
    body = ('{"participants": [{"number": "+447400123456", "number": "+447400999999"},'
            ' {"number": "+447400654321"}]}')
    error = _error(client.post("/v1/conversations", data=body, content_type=JSON, headers=AUTH))
    assert error["field"] == "body" and "repeats the key 'number'" in error["message"]
    assert publisher.published == []


# -- oversized headers ----------------------------------------------------------------------
# gunicorn refuses a header over 8 KB itself (tests/reliability/test_fuzz.py); behind another
# server the app must still answer them sanely.

HUGE = "x" * 100_000


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer " + HUGE},
                                     {"Authorization": HUGE}, {"X-Anything": HUGE}])
def test_huge_headers_on_v1_are_401(client, headers):
    response = client.post("/v1/conversations", json=CREATE, headers=headers)
    assert _error(response, 401)["code"] == "unauthorized"


def test_a_huge_idempotency_key_is_400(client, publisher):
    response = client.post("/v1/conversations", json=CREATE,
                           headers={**AUTH, "Idempotency-Key": HUGE})
    assert _error(response)["field"] == "Idempotency-Key"
    assert publisher.published == []


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
def test_huge_headers_on_webhooks_change_nothing(client, path):
    response = client.post(path, data=WEBHOOKS[path],
                           headers={"X-Anything": HUGE, "Cookie": HUGE})
    assert response.status_code == 200
    response = client.post(path, data=json.dumps(WEBHOOKS[path]),
                           headers={"Content-Type": "application/json; charset=" + HUGE})
    assert response.status_code < 500



def test_huge_headers_on_operations_endpoints_are_never_a_5xx(make_client):
    guarded = make_client(SMSPROXY_METRICS_TOKEN="m" * 40)
    for path in ("/metrics", "/readyz"):
        assert guarded.get(path, headers={"Authorization": "Bearer " + HUGE}).status_code == 401
    assert guarded.get("/healthz", headers={"X-Anything": HUGE}).status_code == 200
