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


@pytest.mark.parametrize(
    "message_id",
    ["0A0000000123ABCD1", "0A0000001234567B", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "m-1",
     "a.b_c-d", "x" * 64],
)
def test_vonage_message_ids_are_taken(message_id):
    assert InboundSms.from_params({**BASE, "messageId": message_id}).message_id == message_id
    receipt = DeliveryReceipt.from_params({**BASE, "messageId": message_id, "status": "delivered"})
    assert receipt.message_id == message_id


@pytest.mark.parametrize(
    "message_id",
    # `X:text` would make the relay's record `out:relay-X:text`: relay-X's body
    ["X:text", "a b", "a/b", "a\x00b", "a\nb", "٣", "ｍ1", "a*", "{a}", "x" * 65],
)
def test_a_message_id_outside_the_strict_set_names_the_field(message_id):
    for parse, params in ((InboundSms.from_params, BASE),
                          (DeliveryReceipt.from_params, {**BASE, "status": "delivered"})):
        with pytest.raises(WebhookFieldError) as raised:
            parse({**params, "messageId": message_id})
        assert raised.value.field == "messageId"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("relay-0A0000000123ABCD1", "relay-0A0000000123ABCD1"),
     ("intro-3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f-0", "intro-3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f-0"),
     ("", None), ("relay-X:text", None), ("order 42", None), ("x" * 101, None), ("٣", None)],
)
def test_a_client_ref_we_could_not_have_sent_is_no_reference(given, kept):
    # Another application on the account may send with any client-ref: the receipt is then
    # acknowledged as not ours, never matched to a key it happens to spell.
    receipt = DeliveryReceipt.from_params({**BASE, "status": "delivered", "client-ref": given})
    assert receipt.client_ref == kept


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "delivered\x00"), ("status", "x:y"), ("status", "délivré"), ("status", "a" * 33),
     ("err-code", "٣"), ("err-code", "1\x00"), ("err-code", "-1"), ("err-code", "9" * 9)],
)
def test_a_receipt_status_or_error_code_of_another_shape_names_the_field(field, value):
    params = {**BASE, "status": "delivered", "err-code": "0", field: value}
    with pytest.raises(WebhookFieldError) as raised:
        DeliveryReceipt.from_params(params)
    assert raised.value.field == field


def test_a_receipt_without_an_error_code_has_code_0():
    receipt = DeliveryReceipt.from_params({**BASE, "status": "DELIVERED", "err-code": ""})
    assert (receipt.status, receipt.err_code) == ("delivered", "0")
