"""Handsets texting virtual numbers, and delivery receipts: webhooks to a local receiver."""

import re
from collections.abc import Callable
from datetime import datetime

import pytest
from vonage import Auth, Vonage
from vonage_sms import SmsMessage
from webhook_receiver import Receiver

from sandbox.testing import SandboxProcess

VIRTUAL = "447700900100"
HANDSET = "447700900001"
SECRET = "webhook-signing-secret"
INBOUND_KEYS = {
    "msisdn",
    "to",
    "messageId",
    "text",
    "type",
    "keyword",
    "message-timestamp",
    "api-key",
}
SIGNED_KEYS = {"timestamp", "nonce", "sig"}
CONCAT_KEYS = {"concat", "concat-ref", "concat-total", "concat-part"}
# How each webhook format arrives: method and content type.
FORMATS = {
    "form": ("POST", "application/x-www-form-urlencoded"),
    "get": ("GET", ""),
    "json": ("POST", "application/json"),
}


def own(sb: SandboxProcess, url: str = "", msisdn: str = VIRTUAL) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": msisdn, "moHttpUrl": url}])


def attempt_times(webhook: dict[str, object]) -> list[datetime]:
    attempts = webhook["attempts"]
    assert isinstance(attempts, list)
    return [datetime.fromisoformat(a["at"]) for a in attempts]


@pytest.mark.parametrize("webhook_format", FORMATS)
def test_inbound_webhook_is_retried_until_acknowledged_in_each_format(
    start_sandbox: Callable[..., SandboxProcess], receiver: Receiver, webhook_format: str
) -> None:
    sb = start_sandbox(
        webhook_format=webhook_format, signature_secret=SECRET, signature_method="sha256"
    )
    own(sb, receiver.url)
    receiver.answers = [500]

    [message_id] = sb.client.send_from_handset(HANDSET, VIRTUAL, "hello there, Bob & co")

    failed, acknowledged = receiver.wait_for(2)
    method, content_type = FORMATS[webhook_format]
    assert (acknowledged.method, acknowledged.path) == (method, "/webhooks/inbound-sms")
    assert acknowledged.content_type.startswith(content_type)
    assert failed.params == acknowledged.params  # a retry re-sends the same payload
    params = acknowledged.params
    assert set(params) == INBOUND_KEYS | SIGNED_KEYS
    assert params["msisdn"] == HANDSET and params["to"] == VIRTUAL
    assert params["messageId"] == message_id
    assert params["text"] == "hello there, Bob & co"
    assert params["type"] == "text" and params["keyword"] == "HELLO"
    assert params["api-key"] == "sandbox-key"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", params["message-timestamp"])
    assert all(isinstance(value, str) for value in params.values())
    auth = Auth(api_key="sandbox-key", signature_secret=SECRET, signature_method="sha256")
    assert auth.check_signature(dict(params))

    sb.client.wait_until_idle()
    [webhook] = sb.client.webhooks()
    assert webhook["status"] == "delivered" and webhook["format"] == webhook_format
    assert [a["status_code"] for a in webhook["attempts"]] == [500, 200]
    first, second = attempt_times(webhook)
    assert (second - first).total_seconds() >= 0.05  # the configured backoff base


def test_multi_part_message_arrives_as_parts_out_of_order(
    sb: SandboxProcess, receiver: Receiver
) -> None:
    own(sb, receiver.url)
    text = " ".join(f"word{n}" for n in range(60))  # 409 GSM characters: 3 parts of 153

    ids = sb.client.send_from_handset(HANDSET, VIRTUAL, text, shuffle_parts=True)

    received = [r.params for r in receiver.wait_for(3)]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(set(p) == INBOUND_KEYS | CONCAT_KEYS for p in received)
    order = [int(p["concat-part"]) for p in received]
    assert sorted(order) == [1, 2, 3] and order != [1, 2, 3]
    assert {p["concat-ref"] for p in received} == {received[0]["concat-ref"]}
    assert {(p["concat"], p["concat-total"]) for p in received} == {("true", "3")}
    in_order = sorted(received, key=lambda p: int(p["concat-part"]))
    assert "".join(p["text"] for p in in_order) == text
    assert [p["messageId"] for p in in_order] == ids


def test_duplicates_deliver_the_same_webhook_several_times(
    sb: SandboxProcess, receiver: Receiver
) -> None:
    own(sb, receiver.url)

    [message_id] = sb.client.send_from_handset(HANDSET, VIRTUAL, "once", duplicates=3)

    received = receiver.wait_for(3)
    assert {r.params["messageId"] for r in received} == {message_id}
    sb.client.wait_until_idle()
    assert sorted(w["copy"] for w in sb.client.webhooks()) == [1, 2, 3]
    assert len(receiver.received) == 3


def test_retries_stop_after_the_maximum_with_growing_backoff(
    sb: SandboxProcess, receiver: Receiver
) -> None:
    own(sb, receiver.url)
    receiver.answers = [503] * 10

    sb.client.send_from_handset(HANDSET, VIRTUAL, "nobody home")

    receiver.wait_for(4)
    sb.client.wait_until_idle()
    [webhook] = sb.client.webhooks()
    assert webhook["status"] == "failed"
    assert [a["status_code"] for a in webhook["attempts"]] == [503] * 4
    times = attempt_times(webhook)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    assert sb.client.stats()["webhooks"]["failed"] == 1


def test_connection_errors_are_retried_and_recorded(sb: SandboxProcess) -> None:
    own(sb, "http://127.0.0.1:9/unreachable")

    sb.client.send_from_handset(HANDSET, VIRTUAL, "hello")

    sb.client.wait_until_idle()
    [webhook] = sb.client.webhooks()
    assert webhook["status"] == "failed" and len(webhook["attempts"]) == 4
    assert all(a["status_code"] is None and "Connection" in a["error"] for a in webhook["attempts"])


def test_number_without_inbound_url_is_undeliverable(sb: SandboxProcess) -> None:
    own(sb, "")

    sb.client.send_from_handset(HANDSET, VIRTUAL, "hello")

    [webhook] = sb.client.webhooks()
    assert webhook["status"] == "undeliverable" and webhook["attempts"] == []


def test_non_gsm_text_arrives_as_unicode(sb: SandboxProcess, receiver: Receiver) -> None:
    own(sb, receiver.url)

    sb.client.send_from_handset(HANDSET, VIRTUAL, "Cześć 👋")

    [received] = receiver.wait_for(1)
    assert received.params["type"] == "unicode" and received.params["text"] == "Cześć 👋"


def test_receipts_go_to_the_account_url_or_the_send_callback(
    start_sandbox: Callable[..., SandboxProcess],
    vonage_for: Callable[..., Vonage],
    receiver: Receiver,
) -> None:
    sb = start_sandbox(dlr_url=f"{receiver.base_url}/webhooks/delivery-receipt")
    own(sb)
    vonage = vonage_for(sb)

    reply = vonage.sms.send(
        SmsMessage(to=HANDSET, from_=VIRTUAL, text="x" * 200, client_ref="conv-7")
    )

    receipts = receiver.wait_for(2)
    assert {r.path for r in receipts} == {"/webhooks/delivery-receipt"}
    assert {r.params["messageId"] for r in receipts} == {m.message_id for m in reply.messages}
    receipt = receipts[0].params
    assert receipt["msisdn"] == HANDSET and receipt["to"] == VIRTUAL
    assert receipt["status"] == "delivered" and receipt["err-code"] == "0"
    assert receipt["client-ref"] == "conv-7" and receipt["api-key"] == "sandbox-key"
    assert receipt["network-code"] == "23410" and receipt["price"] == "0.03330000"
    assert re.fullmatch(r"\d{10}", receipt["scts"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", receipt["message-timestamp"])

    vonage.sms.send(
        SmsMessage(to=HANDSET, from_=VIRTUAL, text="y", callback=f"{receiver.base_url}/per-send")
    )
    assert receiver.wait_for(3)[2].path == "/per-send"

    vonage.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="z", status_report_req=False))
    sb.client.wait_until_idle()
    assert len(receiver.received) == 3
