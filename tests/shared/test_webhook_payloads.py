"""Webhook parameters to domain types (shared/domain.py) and back to task payloads."""

import pytest

from shared.domain import DeliveryReceipt, InboundSms, InboundType, WebhookFieldError
from shared.messages import MessageLog
from tests.vonage_specs import receipt_statuses

BASE = {"msisdn": "447400123456", "to": "447700900100", "messageId": "0A0000000123ABCD1"}
CONCAT = {"concat": "true", "concat-ref": "200", "concat-total": "3", "concat-part": "3"}


@pytest.mark.parametrize(
    ("given", "parsed"),
    [(None, InboundType.TEXT), ("", InboundType.TEXT), ("text", InboundType.TEXT),
     ("unicode", InboundType.UNICODE), ("binary", InboundType.BINARY),
     (" Unicode ", InboundType.UNICODE), ("BINARY", InboundType.BINARY)],
)
def test_inbound_type_is_parsed(given, parsed):
    params = {**BASE, "text": "hi"} | ({} if given is None else {"type": given})
    inbound = InboundSms.from_params(params)
    assert inbound.type is parsed
    assert inbound.to_payload()["type"] == parsed.value
    assert inbound.is_binary is (parsed is InboundType.BINARY)


@pytest.mark.parametrize("given", ["vcard", "wappush", "vcal", "txt", "0"])
def test_unknown_inbound_type_names_the_field(given):
    with pytest.raises(WebhookFieldError) as raised:
        InboundSms.from_params({**BASE, "text": "hi", "type": given})
    assert raised.value.field == "type"


def test_binary_keeps_neither_its_octets_nor_any_text():
    params = {**BASE, "type": "binary", "data": "0102030405", "udh": "050003CC0201",
              "text": "should not travel"}
    inbound = InboundSms.from_params(params)
    assert inbound.is_binary and inbound.text == ""
    assert set(inbound.to_payload()) == {"msisdn", "to", "messageId", "text", "type"}
    assert InboundSms.from_params({**BASE, "type": "binary", "data": "01"}).text == ""


@pytest.mark.parametrize(
    "params",
    [{**BASE, "text": "hi"}, {**BASE, "text": "Cześć", "type": "unicode"},
     {**BASE, "type": "binary", "data": "0102"}, {**BASE, "text": "part", **CONCAT},
     {**BASE, "type": "binary", "data": "0102", "udh": "050003C80303", **CONCAT}],
)
def test_the_task_payload_parses_back_to_the_same_message(params):
    # the worker parses the payload again with from_params
    inbound = InboundSms.from_params(params)
    assert InboundSms.from_params(inbound.to_payload()) == inbound


@pytest.mark.parametrize(
    ("field", "value"),
    [("msisdn", "²³⁴⁵⁶⁷⁸"), ("to", "٤٤٧٧٠٠٩٠٠١٠٠"), ("concat-part", "²"),
     ("concat-total", "①"), ("concat-part", "٣")],
)
def test_only_ascii_digits_are_numbers(field, value):
    with pytest.raises(WebhookFieldError) as raised:
        InboundSms.from_params({**BASE, "text": "hi", **CONCAT, field: value})
    assert raised.value.field == field


@pytest.mark.parametrize(("part", "total"), [("1", "1"), ("1", "255"), ("255", "255")])
def test_concat_counts_from_1_to_255(part, total):
    params = {**BASE, "text": "x", **CONCAT, "concat-part": part, "concat-total": total}
    concat = InboundSms.from_params(params).concat
    assert concat is not None and (concat.part, concat.total) == (int(part), int(total))


@pytest.mark.parametrize("status", receipt_statuses())
def test_every_receipt_status_of_the_definition_round_trips(status):
    params = {"messageId": "0A0000001234567B", "status": status, "msisdn": "447400123456",
              "to": "Acme Inc", "err-code": "0", "network-code": "23410", "price": "0.0333",
              "scts": "2001011400"}
    receipt = DeliveryReceipt.from_params(params)
    assert receipt.status == status
    assert DeliveryReceipt.from_params(receipt.to_payload()) == receipt


@pytest.mark.parametrize("status", receipt_statuses())
@pytest.mark.parametrize("client_ref", [None, "not-ours"])
def test_a_receipt_for_a_message_never_sent_changes_nothing(fake_redis, status, client_ref):
    assert MessageLog(fake_redis).apply_receipt(client_ref, "0A0000001234567B", status, "0") is None
    assert fake_redis.dbsize() == 0
