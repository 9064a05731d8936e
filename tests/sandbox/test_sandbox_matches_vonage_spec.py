"""The sandbox answers and calls as Vonage's OpenAPI definitions say (tests/vonage_specs/).

Replies are read off the wire (plain HTTPS with Basic auth, as the SDK sends), webhooks off a
local receiver in each of the three webhook formats. Beyond the schemas, which type every field
but constrain few values, each check also holds the values the definitions list in prose or in
`x-` extensions: SMS status codes, inbound types, receipt statuses, number types and features.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from webhook_receiver import Receiver

from sandbox.testing import SandboxProcess
from tests.vonage_specs import (
    at,
    component,
    inbound_types,
    receipt_statuses,
    response_schema,
    sms_status_codes,
    validator,
    webhook_schema,
)

API_KEY = "sandbox-key"
API_SECRET = "sandbox-secret"
VIRTUAL = "447700900100"
HANDSET = "447700900001"
E164 = re.compile(r"[1-9]\d{6,14}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

Call = Callable[..., requests.Response]


def assert_valid(spec: str, schema: dict[str, Any], instance: object) -> None:
    errors = sorted(validator(spec, schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def sms_reply_schema(branch: str) -> dict[str, Any]:
    """One branch of the send reply's `oneOf`.

    The definition says the reply is `oneOf: [SMS, Error]`, but neither schema requires a field
    or forbids others, so every reply matches both and `oneOf` fails for all of them. Each reply
    is therefore checked against the branch it claims (success or failure).
    """
    schema = response_schema("sms", "/{format}", "post", "200")
    refs = [option["$ref"] for option in schema["oneOf"]]
    assert f"#/components/schemas/{branch}" in refs
    return component("sms", branch)


@pytest.fixture
def call(sb: SandboxProcess) -> Iterator[Call]:
    """`call(method, path, auth=..., **requests_kwargs)` against the sandbox's Vonage APIs."""
    with requests.Session() as session:
        session.verify = sb.ca_path
        session.trust_env = False

        def send(method: str, path: str, auth: tuple[str, str] = (API_KEY, API_SECRET),
                 **kwargs: Any) -> requests.Response:
            return session.request(method, f"{sb.url}{path}", auth=auth, timeout=5, **kwargs)

        yield send


def own(sb: SandboxProcess, msisdn: str = VIRTUAL, url: str = "") -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": msisdn, "moHttpUrl": url}])


# -- SMS API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "parts"),
    [
        ({"text": "hello"}, 1),
        ({"text": "Cześć " * 30, "type": "unicode", "client-ref": "conv-42"}, 3),
        ({"text": "x" * 400, "callback": "http://127.0.0.1:9/dlr", "ttl": "900000"}, 3),
    ],
)
def test_send_success_reply(sb: SandboxProcess, call: Call, params: dict[str, str],
                            parts: int) -> None:
    own(sb)
    response = call("POST", "/sms/json", data={"from": VIRTUAL, "to": HANDSET, **params})

    assert response.status_code == 200
    reply = response.json()
    assert_valid("sms", sms_reply_schema("SMS"), reply)
    assert reply["message-count"] == str(parts) and len(reply["messages"]) == parts
    for message in reply["messages"]:
        assert message["status"] == "0" and "error-text" not in message
        assert E164.fullmatch(message["to"]) and message["message-id"]
        assert message.get("client-ref") == params.get("client-ref")


@pytest.mark.parametrize(
    ("params", "auth", "status"),
    [
        ({"to": HANDSET, "text": "x"}, (API_KEY, "wrong"), "4"),
        ({"text": "x"}, None, "2"),
        ({"to": HANDSET}, None, "2"),
        ({"to": HANDSET, "text": "x", "type": "vcard"}, None, "3"),
        ({"to": "+44 7700 900001", "text": "x"}, None, "3"),
        ({"to": HANDSET, "text": "x" * 3201}, None, "12"),
        ({"to": HANDSET, "text": "x", "from": "447700900999"}, None, "15"),
        ({"to": HANDSET, "text": "x", "callback": "not a url"}, None, "23"),
        ({"to": HANDSET, "text": "x", "sig": "0" * 32, "api_secret": API_SECRET}, None, "32"),
    ],
)
def test_send_failure_reply(sb: SandboxProcess, call: Call, params: dict[str, str],
                            auth: tuple[str, str] | None, status: str) -> None:
    own(sb)
    kwargs: dict[str, Any] = {"auth": auth} if auth else {}
    response = call("POST", "/sms/json", data={"from": VIRTUAL, **params}, **kwargs)

    assert response.status_code == 200  # the SMS API reports failures in the body
    reply = response.json()
    assert_valid("sms", sms_reply_schema("Error"), reply)
    [message] = reply["messages"]
    assert message["status"] == status and message["status"] in sms_status_codes()
    assert message["error-text"] and "message-id" not in message


@pytest.mark.parametrize(
    "optional",
    [{"ttl": "20000"}, {"ttl": "604800000"}, {"status-report-req": "false"},
     {"message-class": "0"}, {"message-class": "3"}, {"protocol-id": "127"},
     {"client-ref": "r" * 40}, {"account-ref": "customer1234"},
     {"entity-id": "1101456324675322134", "content-id": "1107457532145798767"}],
)
def test_send_takes_the_optional_fields_of_the_definition(sb: SandboxProcess, call: Call,
                                                          optional: dict[str, str]) -> None:
    own(sb)
    reply = call("POST", "/sms/json",
                 data={"from": VIRTUAL, "to": HANDSET, "text": "x", **optional}).json()
    assert_valid("sms", sms_reply_schema("SMS"), reply)
    assert reply["messages"][0]["status"] == "0"


def test_alphanumeric_sender_spaces_are_ignored(start_sandbox: Callable[..., SandboxProcess],
                                                receiver: Receiver) -> None:
    # "If alphanumeric, spaces will be ignored" (NewMessage.from): 12 characters, 10 counted
    sb = start_sandbox(strict_sender=False,
                       dlr_url=f"{receiver.base_url}/webhooks/delivery-receipt")
    with requests.Session() as session:
        session.verify, session.trust_env = sb.ca_path, False
        reply = session.post(f"{sb.url}/sms/json", auth=(API_KEY, API_SECRET), timeout=5,
                             data={"from": "Acme Shop UK", "to": HANDSET, "text": "x"}).json()
    assert reply["messages"][0]["status"] == "0"
    assert sb.client.inbox(HANDSET)[0]["from"] == "AcmeShopUK"
    [receipt] = receiver.wait_for(1)
    assert_receipt_as_specified(receipt.params)
    assert receipt.params["to"] == "AcmeShopUK"


def test_throttled_send_reply(sb: SandboxProcess, call: Call) -> None:
    own(sb)
    sb.client.set_faults(throttle_rate=1.0)
    response = call("POST", "/sms/json", data={"from": VIRTUAL, "to": HANDSET, "text": "x"})

    reply = response.json()
    assert_valid("sms", sms_reply_schema("Error"), reply)
    assert reply["messages"][0]["status"] == "1"


# -- Number Insight basic -------------------------------------------------------------------


BASIC = response_schema("number-insight", "/basic/{format}", "get", "200")


@pytest.mark.parametrize(
    ("query", "auth", "status"),
    [
        ({"number": "447700900001"}, None, 0),
        ({"number": "12015550123"}, None, 0),
        # the definition's pattern allows spaces, dashes and brackets
        ({"number": "07700 900001", "country": "GB"}, None, 0),
        ({"number": "+1 (201) 555-0123"}, None, 0),
        ({"number": "447700900001x"}, None, 3),
        ({"number": "12"}, None, 3),
        ({}, None, 3),
        ({"number": "447700900001"}, (API_KEY, "wrong"), 4),
    ],
)
def test_insight_basic_reply(call: Call, query: dict[str, str], auth: tuple[str, str] | None,
                             status: int) -> None:
    kwargs: dict[str, Any] = {"auth": auth} if auth else {}
    response = call("GET", "/ni/basic/json", params=query, **kwargs)

    assert response.status_code == 200
    reply = response.json()
    assert_valid("number-insight", BASIC, reply)
    assert reply["status"] == status and reply["status_message"] and reply["request_id"]
    if status == 0:
        assert E164.fullmatch(reply["international_format_number"])
        assert re.fullmatch(r"[A-Z]{2}", reply["country_code"])
        assert re.fullmatch(r"[A-Z]{3}", reply["country_code_iso3"])


def test_insight_basic_busy_reply(sb: SandboxProcess, call: Call) -> None:
    sb.client.set_faults(throttle_rate=1.0)
    reply = call("GET", "/ni/basic/json", params={"number": "447700900001"}).json()
    assert_valid("number-insight", BASIC, reply)
    assert reply["status"] == 1


# -- Numbers API ----------------------------------------------------------------------------


def numbers_reply(path: str, method: str, response: requests.Response) -> dict[str, Any]:
    """The reply, checked against the schema the definition gives for its HTTP status."""
    reply = response.json()
    assert_valid("numbers", response_schema("numbers", path, method, str(response.status_code)),
                 reply)
    assert isinstance(reply, dict)
    return reply


def number_types() -> set[str]:
    return set(at("numbers", "components", "parameters", "type", "schema", "enum"))


def number_features() -> set[str]:
    search = at("numbers", "paths", "/number/search", "get", "parameters")
    [features] = [p for p in search if p.get("name") == "features"]
    return {f for value in features["schema"]["enum"] for f in value.split(",")}


def assert_entries_as_described(reply: dict[str, Any]) -> None:
    for entry in reply.get("numbers", []):
        assert entry["type"] in number_types()
        assert set(entry["features"]) <= number_features()
        assert E164.fullmatch(entry["msisdn"])


@pytest.mark.parametrize(
    "query",
    [{"country": "GB"}, {"country": "GB", "size": "5", "index": "2"},
     {"country": "US", "pattern": "109", "search_pattern": "2", "features": "SMS,VOICE"},
     {"country": "GB", "type": "landline"}, {"country": "GB", "index": "9"}],
)
def test_search_reply(call: Call, query: dict[str, str]) -> None:
    response = call("GET", "/number/search", params=query)
    assert response.status_code == 200
    reply = numbers_reply("/number/search", "get", response)
    assert_entries_as_described(reply)
    assert all(isinstance(entry["cost"], str) for entry in reply.get("numbers", []))
    assert ("numbers" in reply) == bool(reply["count"] and query.get("index", "1") != "9")


def test_list_owned_reply(sb: SandboxProcess, call: Call) -> None:
    empty = numbers_reply("/account/numbers", "get", call("GET", "/account/numbers"))
    assert empty == {"count": 0}

    own(sb, "447700900100", "https://example.com/webhooks/inbound-sms")
    own(sb, "447700900101")
    sb.client.add_owned([{"country": "US", "msisdn": "12015550100"}])
    for query in ({}, {"country": "GB"}, {"pattern": "0101", "search_pattern": "1"},
                  {"size": "1", "index": "3"}):
        response = call("GET", "/account/numbers", params=query)
        assert response.status_code == 200
        assert_entries_as_described(numbers_reply("/account/numbers", "get", response))


@pytest.mark.parametrize(("path", "method"),
                         [("/account/numbers", "get"), ("/number/search", "get")])
def test_list_and_search_unauthorized_reply(call: Call, path: str, method: str) -> None:
    response = call(method.upper(), path, params={"country": "GB"}, auth=(API_KEY, "wrong"))
    assert response.status_code == 401
    numbers_reply(path, method, response)


def test_buy_update_cancel_replies(sb: SandboxProcess, call: Call) -> None:
    number = {"country": "GB", "msisdn": "447700900105"}
    for path, data in [
        ("/number/buy", number),
        ("/number/update", {**number, "moHttpUrl": "https://example.com/webhooks/inbound-sms"}),
        ("/number/update", {**number, "moHttpUrl": ""}),
        ("/number/cancel", number),
    ]:
        response = call("POST", path, data=data)
        assert response.status_code == 200, (path, response.text)
        reply = numbers_reply(path, "post", response)
        assert reply == {"error-code": "200", "error-code-label": "success"}

        unauthorized = call("POST", path, data=data, auth=(API_KEY, "wrong"))
        assert unauthorized.status_code == 401
        assert numbers_reply(path, "post", unauthorized)["error-code"] == "401"


def test_buy_failure_reply(call: Call) -> None:
    response = call("POST", "/number/buy", data={"country": "GB", "msisdn": "447700900999"})
    assert response.status_code == 420
    assert numbers_reply("/number/buy", "post", response)["error-code"] == "420"


# -- Webhooks -------------------------------------------------------------------------------


def assert_inbound_as_specified(params: dict[str, Any]) -> None:
    assert_valid("sms", webhook_schema("inbound"), params)
    assert params["type"] in inbound_types()
    assert E164.fullmatch(params["msisdn"]) and E164.fullmatch(params["to"])
    assert TIMESTAMP.fullmatch(params["message-timestamp"])
    assert params["keyword"] == (params["text"].split() or [""])[0].upper()
    if "concat" in params:
        assert params["concat"] == "true"
        assert 1 <= int(params["concat-part"]) <= int(params["concat-total"])
        assert params["concat-ref"]
    if "timestamp" in params:
        assert params["timestamp"].isdigit() and params["nonce"] and params["sig"]


def assert_receipt_as_specified(params: dict[str, Any]) -> None:
    assert_valid("sms", webhook_schema("receipt"), params)
    assert params["status"] in receipt_statuses()
    assert E164.fullmatch(params["msisdn"])
    assert re.fullmatch(r"\d{10}", params["scts"])  # YYMMDDHHMM
    assert TIMESTAMP.fullmatch(params["message-timestamp"])
    assert params["err-code"].isdigit() and params["messageId"]


@pytest.mark.parametrize(
    ("webhook_format", "signing"),
    [("form", {}), ("get", {"signature_secret": "s3cret"}),
     ("json", {"signature_secret": "s3cret", "signature_method": "sha256"})],
)
def test_webhooks(start_sandbox: Callable[..., SandboxProcess], receiver: Receiver,
                  webhook_format: str, signing: dict[str, str]) -> None:
    sb = start_sandbox(webhook_format=webhook_format,
                       dlr_url=f"{receiver.base_url}/webhooks/delivery-receipt", **signing)
    own(sb, url=receiver.url)
    texts = ["hello there", "Cześć 👋", " ".join(f"word{n}" for n in range(60)), " "]
    inbound_parts = sum(len(sb.client.send_from_handset(HANDSET, VIRTUAL, t)) for t in texts)
    with requests.Session() as session:
        session.verify, session.trust_env = sb.ca_path, False
        reply = session.post(f"{sb.url}/sms/json", auth=(API_KEY, API_SECRET), timeout=5,
                             data={"from": VIRTUAL, "to": HANDSET, "text": "y" * 200,
                                   "client-ref": "conv-7"}).json()
    receipt_parts = len(reply["messages"])

    received = receiver.wait_for(inbound_parts + receipt_parts)
    inbound = [r.params for r in received if r.path == "/webhooks/inbound-sms"]
    receipts = [r.params for r in received if r.path == "/webhooks/delivery-receipt"]
    assert (len(inbound), len(receipts)) == (inbound_parts, receipt_parts) == (6, 2)
    for params in inbound:
        assert_inbound_as_specified(params)
    assert {p["type"] for p in inbound} == {"text", "unicode"}
    assert sum("concat" in p for p in inbound) == 3
    for params in receipts:
        assert_receipt_as_specified(params)
        assert params["client-ref"] == "conv-7"
