"""The SMS API through the real vonage SDK: shapes, splitting, errors and injected faults."""

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from vonage import Vonage
from vonage_http_client.errors import HttpRequestError, ServerError
from vonage_sms import SmsError, SmsMessage

from sandbox.testing import SandboxProcess

VIRTUAL = "447700900100"
HANDSET = "447700900001"


@pytest.fixture(autouse=True)
def owned_number(sb: SandboxProcess) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])


def send(vonage: Vonage, text: str = "hello", **fields: str) -> dict[str, Any]:
    vonage.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text=text, **fields))
    reply = vonage.http_client.last_response.json()
    assert isinstance(reply, dict)
    return reply


def test_single_part_reply_is_all_strings_and_reaches_the_inbox(
    sb: SandboxProcess, vonage: Vonage
) -> None:
    response = vonage.sms.send(
        SmsMessage(to=HANDSET, from_=VIRTUAL, text="Hi from the proxy", client_ref="conv-42")
    )

    reply = vonage.http_client.last_response.json()
    assert reply["message-count"] == "1"
    [message] = reply["messages"]
    assert set(message) == {
        "to",
        "message-id",
        "status",
        "remaining-balance",
        "message-price",
        "network",
        "client-ref",
    }
    assert all(isinstance(value, str) for value in message.values())
    assert message["status"] == "0" and message["client-ref"] == "conv-42"
    assert response.messages[0].client_ref == "conv-42"
    [received] = sb.client.wait_for_inbox(HANDSET, 1)
    assert received["from"] == VIRTUAL and received["text"] == "Hi from the proxy"
    assert received["client_ref"] == "conv-42"
    assert received["message_ids"] == [message["message-id"]]


@pytest.mark.parametrize(
    ("text", "parts", "kind"),
    [
        ("x" * 160, 1, "text"),
        ("x" * 161, 2, "text"),
        ("x" * 153 * 3, 3, "text"),
        ("€" * 80, 1, "text"),  # GSM extension characters count twice: 160 septets
        ("€" * 81, 2, "text"),
        ("é" * 160, 1, "text"),  # in the GSM basic table
        ("ś" * 70, 1, "unicode"),  # outside GSM-7: UCS-2
        ("ś" * 71, 2, "unicode"),
    ],
)
def test_long_texts_are_split_with_one_message_id_per_part(
    sb: SandboxProcess, vonage: Vonage, text: str, parts: int, kind: str
) -> None:
    reply = send(vonage, text)

    assert reply["message-count"] == str(parts)
    ids = [m["message-id"] for m in reply["messages"]]
    assert len(set(ids)) == parts
    [sent] = sb.client.inbox(HANDSET)
    assert sent["type"] == kind and len(sent["parts"]) == parts
    assert "".join(sent["parts"]) == text


def test_type_unicode_forces_ucs2_lengths(sb: SandboxProcess, vonage: Vonage) -> None:
    reply = send(vonage, "a" * 71, type="unicode")

    assert reply["message-count"] == "2"


def test_remaining_balance_falls_per_part(vonage: Vonage) -> None:
    reply = send(vonage, "x" * 200)

    first, second = reply["messages"]
    price = float(first["message-price"])
    assert float(first["remaining-balance"]) - float(second["remaining-balance"]) == pytest.approx(
        price
    )


def test_wrong_credentials_are_status_4(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    client = vonage_for(sb, secret="wrong")

    with pytest.raises(SmsError, match="error code 4"):
        client.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="x"))
    assert sb.client.sms_log() == []


def test_sender_not_owned_is_status_15(sb: SandboxProcess, vonage: Vonage) -> None:
    with pytest.raises(SmsError, match="error code 15: Illegal Sender Address - rejected"):
        vonage.sms.send(SmsMessage(to=HANDSET, from_="447700900199", text="x"))
    assert sb.client.inbox(HANDSET) == []


def test_strict_sender_can_be_turned_off(
    start_sandbox: Callable[..., SandboxProcess], vonage_for: Callable[..., Vonage]
) -> None:
    sb = start_sandbox(strict_sender=False)

    vonage_for(sb).sms.send(SmsMessage(to=HANDSET, from_="Acme", text="x"))

    assert sb.client.inbox(HANDSET)[0]["from"] == "Acme"


def test_throttle_rate_gives_status_1(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.set_faults(throttle_rate=1.0)

    with pytest.raises(SmsError, match="error code 1: Throttled"):
        vonage.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="x"))
    assert sb.client.stats()["sms_rejected"] == 1


def test_error_rate_gives_http_500(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.set_faults(error_rate=1.0)

    with pytest.raises(ServerError):
        vonage.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="x"))


def test_sms_script_forces_exact_outcomes_in_order(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.set_faults(sms_script=["1", "http500", "5", "http429", "0"])
    message = SmsMessage(to=HANDSET, from_=VIRTUAL, text="retry me")

    with pytest.raises(SmsError, match="error code 1"):
        vonage.sms.send(message)
    with pytest.raises(ServerError):
        vonage.sms.send(message)
    with pytest.raises(SmsError, match="error code 5: Internal Error"):
        vonage.sms.send(message)
    with pytest.raises(HttpRequestError) as raised:
        vonage.sms.send(message)
    assert raised.value.response.status_code == 429
    vonage.sms.send(message)  # "0": a normal send
    vonage.sms.send(message)  # the script is used up

    assert len(sb.client.inbox(HANDSET)) == 2
    assert sb.client.set_faults()["sms_script"] == []


def test_latency_is_added(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.set_faults(latency_ms=150)

    started = time.monotonic()
    vonage.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="slow"))

    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"to": HANDSET, "text": "x"}, "2"),  # no from
        ({"from": VIRTUAL, "text": "x"}, "2"),  # no to
        ({"from": VIRTUAL, "to": HANDSET}, "2"),  # no text
        ({"from": VIRTUAL, "to": "+" + HANDSET, "text": "x"}, "3"),
        ({"from": VIRTUAL, "to": HANDSET, "text": "x", "type": "weird"}, "3"),
        ({"from": VIRTUAL, "to": HANDSET, "text": "x", "ttl": "5"}, "3"),
        ({"from": VIRTUAL, "to": HANDSET, "text": "x" * 3201}, "12"),
        ({"from": VIRTUAL, "to": HANDSET, "text": "x", "callback": "ftp://x"}, "23"),
        ({"from": VIRTUAL, "to": HANDSET, "text": "x", "sig": "0" * 32}, "14"),
    ],
)
def test_bad_parameters_get_vonage_statuses(
    sb: SandboxProcess, fields: dict[str, str], status: str
) -> None:
    reply = requests.post(
        f"{sb.url}/sms/json",
        data=fields,
        auth=("sandbox-key", "sandbox-secret"),
        verify=sb.ca_path,
        timeout=5,
    )

    assert reply.status_code == 200
    [message] = reply.json()["messages"]
    assert message["status"] == status and message["error-text"]


def test_json_body_and_parameter_credentials_are_accepted(sb: SandboxProcess) -> None:
    body = {"api_key": "sandbox-key", "api_secret": "sandbox-secret", "from": VIRTUAL}
    reply = requests.post(
        f"{sb.url}/sms/json",
        json={**body, "to": HANDSET, "text": "json"},
        verify=sb.ca_path,
        timeout=5,
    )

    assert reply.json()["messages"][0]["status"] == "0"


def test_missing_credentials_are_status_2(sb: SandboxProcess) -> None:
    reply = requests.post(
        f"{sb.url}/sms/json",
        data={"from": VIRTUAL, "to": HANDSET, "text": "x"},
        verify=sb.ca_path,
        timeout=5,
    )

    assert reply.json()["messages"][0]["status"] == "2"
