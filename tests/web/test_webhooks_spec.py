"""Every webhook Vonage's SMS definition allows is acknowledged, in every format, signed or not;
bad input is a 400 naming the field; nothing is ever a 5xx.

Webhooks are generated from the definition (tests/vonage_specs/sms.yml): its fields, the values
it lists (`type`, `status`), and for the fields it types only as strings, values of the shapes
its descriptions give (E.164 numbers, `YYMMDDHHMM`, counts from 1, hex).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.jobs import TaskName
from shared.keys import Keys
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.doubles import FakePublisher
from tests.vonage_specs import (
    at,
    inbound_types,
    receipt_statuses,
    validator,
    webhook_schema,
)
from web.app import create_app

SECRET = "s3cret"
PATHS = {"inbound": "/webhooks/inbound-sms", "receipt": "/webhooks/delivery-receipt"}
ACKNOWLEDGED = range(200, 206)  # what Vonage takes as an acknowledgement
SIGNED_FIELDS = {"timestamp", "nonce", "sig"}
EXAMPLES = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

e164 = st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True)
message_ids = st.one_of(
    st.from_regex(r"[0-9A-F]{16,18}", fullmatch=True),  # "0A0000000123ABCD1"
    st.uuids().map(str),
    st.from_regex(r"[0-9a-zA-Z-]{1,64}", fullmatch=True),
)
api_keys = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=170)
hex_octets = st.binary(max_size=140).map(bytes.hex) | st.binary(max_size=140).map(
    lambda b: b.hex().upper())
signing_extras = st.fixed_dictionaries({}, optional={
    "timestamp": st.integers(0, 2**32).map(str),
    "nonce": st.uuids().map(str),
})


@st.composite
def inbound_webhooks(draw: st.DrawFn) -> dict[str, str]:
    kind = draw(st.sampled_from(inbound_types()))
    text = draw(texts)
    params = {
        "api-key": draw(api_keys),
        "msisdn": draw(e164),
        "to": draw(e164),
        "messageId": draw(message_ids),
        "text": text,
        "type": kind,
        "keyword": (text.split() or [""])[0].upper(),
        "message-timestamp": draw(moments).strftime("%Y-%m-%d %H:%M:%S"),
    }
    if draw(st.booleans()):
        total = draw(st.integers(1, 255))
        params |= {
            "concat": "true",
            "concat-ref": str(draw(st.integers(0, 65535))),  # an 8- or 16-bit UDH reference
            "concat-total": str(total),
            "concat-part": str(draw(st.integers(1, total))),
        }
    if kind == "binary":
        params["data"] = draw(hex_octets)
        if draw(st.booleans()):
            params["udh"] = draw(st.sampled_from(["050003CC0201", "0605040B8423F0"]) | hex_octets)
    return params | draw(signing_extras)


@st.composite
def receipt_webhooks(draw: st.DrawFn) -> dict[str, str]:
    # The definition requires no field; the receiver needs these three to use a receipt at all.
    params = {
        "messageId": draw(message_ids),
        "status": draw(st.sampled_from(receipt_statuses())),
        "msisdn": draw(e164),
    }
    optional = st.fixed_dictionaries({}, optional={
        "to": e164 | st.from_regex(r"[A-Za-z0-9]{1,11}", fullmatch=True),  # a sender id
        "network-code": st.from_regex(r"[0-9]{5,6}", fullmatch=True),
        "price": st.decimals(0, 10, places=8).map(lambda d: f"{d:.8f}"),
        "scts": moments.map(lambda m: m.strftime("%y%m%d%H%M")),
        "err-code": st.integers(0, 999).map(str),
        "api-key": api_keys,
        "client-ref": st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
        "message-timestamp": moments.map(lambda m: m.strftime("%Y-%m-%d %H:%M:%S")),
    })
    return params | draw(optional) | draw(signing_extras)


GENERATORS = {"inbound": inbound_webhooks(), "receipt": receipt_webhooks()}


@pytest.fixture
def webhook_client(fake_redis, make_settings):
    """`post(kind, params, style, signed)`: a fresh store and queue for each call."""
    publisher = FakePublisher()
    clients = {
        signed: create_app(
            make_settings(**({"VONAGE_SIGNATURE_SECRET": SECRET,
                              "VONAGE_SIGNATURE_METHOD": SignatureMethod.SHA256.value}
                             if signed else {})),
            redis_client=fake_redis, publisher=publisher,
        ).test_client()
        for signed in (False, True)
    }

    def post(kind: str, params: dict[str, str], style: str, signed: bool = False):
        fake_redis.flushall()
        publisher.published.clear()
        if signed:
            params = {**params, "timestamp": str(int(time.time()))}
            params["sig"] = sign(params, SECRET, SignatureMethod.SHA256)
        client, path = clients[signed], PATHS[kind]
        if style == "query":
            response = client.get(path, query_string=params)
        elif style == "form":
            response = client.post(path, data=params)
        else:
            response = client.post(path, json=params)
        return response, list(publisher.published)

    return post


def test_the_generators_cover_the_definition():
    """A field added to the definition must be thought about here (and in the receiver)."""
    for kind, schema_name in (("inbound", "InboundMessage"), ("receipt", "DeliveryReceipt")):
        fields = set(at("sms", "components", "schemas", schema_name, "properties"))
        generated = _fields_generated(GENERATORS[kind])
        # `sig` is sent with every signed webhook, though InboundMessage does not list it
        assert fields <= generated | SIGNED_FIELDS, fields - generated
        assert generated - fields <= {"sig"}


def _fields_generated(strategy: st.SearchStrategy[dict[str, str]]) -> set[str]:
    seen: set[str] = set()

    @settings(max_examples=100, database=None, deadline=None)
    @given(strategy)
    def collect(params: dict[str, str]) -> None:
        seen.update(params)

    collect()
    return seen


@pytest.mark.parametrize("kind", ["inbound", "receipt"])
@given(data=st.data())
@EXAMPLES
def test_generated_webhooks_are_valid_under_the_definition(kind, data):
    params = data.draw(GENERATORS[kind])
    errors = list(validator("sms", webhook_schema(kind)).iter_errors(params))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("style", ["query", "form", "json"])
@pytest.mark.parametrize("kind", ["inbound", "receipt"])
@given(data=st.data())
@EXAMPLES
def test_every_spec_valid_webhook_is_acknowledged_and_handled(
    webhook_client, fake_redis, kind, style, data
):
    """An inbound SMS is queued for the worker; a receipt is recorded by web itself."""
    params = data.draw(GENERATORS[kind])
    signed = data.draw(st.booleans(), label="signed")

    response, published = webhook_client(kind, params, style, signed)

    assert response.status_code in ACKNOWLEDGED, response.get_json()
    if kind == "inbound":
        assert response.get_json() == {"status": "queued"}
        [(task, payload)] = published
        assert task is TaskName.RELAY_INBOUND
        assert payload["messageId"] == params["messageId"]
        assert payload["type"] == params["type"]
        assert "data" not in payload and "udh" not in payload
        assert payload["text"] == ("" if params["type"] == "binary" else params["text"])
    else:
        assert response.get_json() == {"status": "recorded"}
        assert published == []
        marker = Keys().dedupe("receipt", f"{params['messageId']}:{params['status']}")
        assert fake_redis.get(marker) == "recorded"


_ANY_FIELD = sorted(
    set(at("sms", "components", "schemas", "InboundMessage", "properties"))
    | set(at("sms", "components", "schemas", "DeliveryReceipt", "properties"))
    | SIGNED_FIELDS
)
_ODD_VALUES = [
    "", " ", "0", "-1", "1", "255", "256", "65536", "9" * 30, "1e3", "NaN", "+", "++447",
    "true", "TRUE", "false", "binary", "BINARY", "vcard", "\x00", "a&b=c", "😀", "x" * 100,
    # digits to str.isdigit() that int() refuses ("²", "①") or reads as another number ("٣")
    "²", "①", "٣", "߁", "٤٤٧٧٠٠٩٠٠١٠٠",
]
_ANY_VALUE = st.one_of(st.text(max_size=30), st.sampled_from(_ODD_VALUES), e164)
_BASES = {
    "inbound": [
        {"msisdn": "447400123456", "to": "447700900100", "messageId": "0A0000000123ABCD1",
         "text": "hi there", "type": "text", "keyword": "HI", "concat": "true",
         "concat-ref": "7", "concat-total": "3", "concat-part": "2"},
        {"msisdn": "447400123456", "to": "447700900100", "messageId": "0A0000000123ABCD2",
         "type": "binary", "data": "0102", "udh": "050003CC0201"},
    ],
    "receipt": [
        {"messageId": "0A0000001234567B", "status": "delivered", "msisdn": "447400123456",
         "to": "AcmeInc", "err-code": "0", "client-ref": "relay-m-1", "scts": "2001011400"},
    ],
}


def assert_handled(response, published) -> None:
    """Acknowledged, or a 400 that says what was wrong; never a server error."""
    assert response.status_code < 500, response.get_json()
    body: dict[str, Any] = response.get_json()
    if response.status_code == 400:
        assert body["error"]["code"] in {"invalid_field", "bad_request"} and not published
        if body["error"]["code"] == "invalid_field":
            assert body["error"]["field"] in body["error"]["message"]
    else:
        assert response.status_code in ACKNOWLEDGED


@pytest.mark.parametrize("style", ["query", "form", "json"])
@pytest.mark.parametrize("kind", ["inbound", "receipt"])
def test_any_field_set_to_an_odd_value_is_never_a_server_error(webhook_client, kind, style):
    for base in _BASES[kind]:
        for name in _ANY_FIELD:
            for value in _ODD_VALUES:
                assert_handled(*webhook_client(kind, {**base, name: value}, style))


@st.composite
def damaged_webhooks(draw: st.DrawFn, kind: str) -> dict[str, str]:
    """A spec-valid webhook with some fields dropped and some set to anything."""
    params = draw(GENERATORS[kind])
    names = sorted(params)
    for name in draw(st.sets(st.sampled_from(names), max_size=2)):
        del params[name]
    params |= draw(st.dictionaries(st.sampled_from(names), _ANY_VALUE, min_size=1, max_size=3))
    return params | draw(st.dictionaries(st.sampled_from(_ANY_FIELD), _ANY_VALUE, max_size=2))


@pytest.mark.parametrize("style", ["query", "form", "json"])
@pytest.mark.parametrize("kind", ["inbound", "receipt"])
@given(data=st.data())
@EXAMPLES
def test_no_webhook_is_ever_a_server_error(webhook_client, kind, style, data):
    params = data.draw(damaged_webhooks(kind) | st.dictionaries(st.sampled_from(_ANY_FIELD),
                                                                _ANY_VALUE, max_size=12))
    assert_handled(*webhook_client(kind, params, style))


def test_binary_without_text_is_queued_with_its_type_and_without_its_octets(webhook_client):
    params = {"msisdn": "447400123456", "to": "447700900100", "messageId": "0A0000000123ABCD1",
              "type": "binary", "data": "0102030405", "udh": "050003CC0201"}
    for style in ("query", "form", "json"):
        response, [(task, payload)] = webhook_client("inbound", params, style)
        assert response.status_code == 200 and task is TaskName.RELAY_INBOUND
        float(payload.pop("received_at"))  # when web received it (for the relay latency)
        assert payload == {"msisdn": "447400123456", "to": "447700900100",
                           "messageId": "0A0000000123ABCD1", "text": "", "type": "binary"}


@pytest.mark.parametrize("client_ref", [None, "", "someone-else-42", "relay-never-sent"])
def test_receipt_for_a_message_never_sent_is_acknowledged(webhook_client, client_ref):
    params = {"messageId": "0A0000009999FFFF", "status": "delivered", "msisdn": "447400123456",
              "to": "AcmeInc", "err-code": "0"}
    if client_ref is not None:
        params["client-ref"] = client_ref
    response, published = webhook_client("receipt", params, "form")
    assert response.status_code == 200 and response.json == {"status": "recorded"}
    assert published == []


INBOUND = {"msisdn": "447400123456", "to": "447700900100", "messageId": "m-1", "text": "hi",
           "type": "text"}
CONCAT = {"concat": "true", "concat-ref": "7", "concat-total": "3", "concat-part": "2"}
RECEIPT = {"messageId": "v-1", "status": "delivered", "msisdn": "447400123456"}


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("inbound", {**INBOUND, "msisdn": "²³⁴⁵⁶⁷⁸"}, "msisdn"),
        ("inbound", {**INBOUND, "to": "٤٤٧٧٠٠٩٠٠١٠٠"}, "to"),
        ("inbound", {**INBOUND, "type": "vcard"}, "type"),
        ("inbound", {**INBOUND, "type": "wappush"}, "type"),
        ("inbound", {**INBOUND, "messageId": "x" * 65}, "messageId"),
        ("inbound", {**INBOUND, **CONCAT, "concat-total": "²"}, "concat-total"),
        ("inbound", {**INBOUND, **CONCAT, "concat-part": "0"}, "concat-part"),
        ("inbound", {**INBOUND, **CONCAT, "concat-total": "256"}, "concat-total"),
        ("inbound", {**INBOUND, **CONCAT, "concat-part": "4"}, "concat-part"),
        ("inbound", {**INBOUND, **CONCAT, "concat-ref": ""}, "concat-ref"),
        ("receipt", {k: v for k, v in RECEIPT.items() if k != "status"}, "status"),
        ("receipt", {**RECEIPT, "msisdn": "AcmeInc"}, "msisdn"),
        ("receipt", {**RECEIPT, "messageId": ""}, "messageId"),
    ],
)
@pytest.mark.parametrize("style", ["query", "form", "json"])
def test_bad_input_is_400_naming_the_field(webhook_client, kind, params, field, style):
    response, published = webhook_client(kind, params, style)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert published == []
