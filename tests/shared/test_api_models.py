"""The request models: the wording and the field of the one problem reported, and the values
a valid request yields."""

import pytest

from shared.api_models import (
    RequestError,
    decode_cursor,
    encode_cursor,
    parse_create_request,
    parse_list_query,
)
from shared.domain import ConversationStatus, new_conversation_id

A, B = {"number": "+447400100001"}, {"number": "+44 7400 100002"}
TWO = {"participants": [A, B]}


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ([A, B], "body", "must be a JSON object"),
        ({}, "participants", "must be a list of two participants"),
        ({"participants": {"0": A}}, "participants", "must be a list of two participants"),
        # the count before the contents, the contents in order, an unknown field first
        ({"participants": [{"number": 1}]}, "participants", "must have exactly two participants"),
        ({"participants": [A, B, A]}, "participants", "must have exactly two participants"),
        ({"participants": ["x", {"number": 1}]}, "participants[0]",
         "must be an object with a number"),
        ({"participants": [{"number": "x"}, {"number": 1, "age": 3}]},
         "participants[0].number", "not a phone number in international form (+country code)"),
        ({"participants": [{"number": "x", "zz": 1, "age": 3}, B]}, "participants[0].age",
         "is not a known field"),
        ({"participants": [{"number": 1}, B], "zzz": 1, "colour": 2}, "colour",
         "is not a known field"),
        ({"participants": [A, {"number": "x" * 33}]}, "participants[1].number",
         "must be a phone number in E.164 form"),
        ({"participants": [A, {"number": "+447400100001"}]}, "participants",
         "must be two different numbers"),
        ({"participants": [A, {**B, "display_name": "x" * 65}]}, "participants[1].display_name",
         "must be 1 to 64 characters"),
        # a lone surrogate is no character: refused before it reaches Redis or Vonage
        ({"participants": [A, {**B, "display_name": "\ud800"}]}, "participants[1].display_name",
         "must be 1 to 64 characters"),
        ({**TWO, "ttl_seconds": "3600"}, "ttl_seconds", "must be a whole number of seconds"),
        ({**TWO, "ttl_seconds": True}, "ttl_seconds", "must be a whole number of seconds"),
        ({**TWO, "ttl_seconds": None}, "ttl_seconds", "must be a whole number of seconds"),
        ({**TWO, "ttl_seconds": 3600.5}, "ttl_seconds", "must be a whole number of seconds"),
        ({**TWO, "ttl_seconds": 59}, "ttl_seconds", "must be between 60 and 7200"),
        ({**TWO, "ttl_seconds": 7201, "metadata": []}, "ttl_seconds",
         "must be between 60 and 7200"),
        ({**TWO, "callback_url": "ftp://x"}, "callback_url", "must be an https URL"),
        ({**TWO, "callback_url": "http://[::1"}, "callback_url", "must be an https URL"),
        ({**TWO, "callback_url": "https://" + "x" * 2048}, "callback_url",
         "must be an https URL"),
        ({**TWO, "intro_text": "", "metadata": 1}, "intro_text", "must be 1 to 480 characters"),
        ({**TWO, "metadata": None}, "metadata", "must be a JSON object"),
        ({**TWO, "metadata": {"a": float("inf")}}, "metadata",
         "must not contain NaN or Infinity"),
        ({**TWO, "metadata": {"k": "v" * 4090}}, "metadata", "must be at most 4096 bytes of JSON"),
        ({**TWO, "": 1}, "", "is not a known field"),
        ({**TWO, "mask": "phone"}, "mask", "must be a list of phone, email or link"),
        ({**TWO, "mask": [1]}, "mask[0]", "must be a list of phone, email or link"),
        ({**TWO, "mask": ["fax"]}, "mask", "'fax' is not one of email, link, phone"),
        ({**TWO, "mask": ["phone", "phone"]}, "mask", "must not name a kind twice"),
    ],
)
def test_the_first_problem_is_reported_with_its_field(make_settings, body, field, problem):
    settings = make_settings(SMSPROXY_MAX_TTL_SECONDS="7200", SMSPROXY_DEFAULT_TTL_SECONDS="600",
                             SMSPROXY_CALLBACK_SECRET="s")
    with pytest.raises(RequestError) as info:
        parse_create_request(body, settings)
    assert (info.value.field, info.value.problem) == (field, problem)
    assert str(info.value) == f"{field}: {problem}"


def test_a_valid_request_yields_msisdns_and_the_settings_default_ttl(make_settings):
    settings = make_settings(SMSPROXY_DEFAULT_TTL_SECONDS="600", SMSPROXY_CALLBACK_SECRET="s")
    body = {"participants": [{**A, "display_name": "Rita"}, {"number": "0044 7400 100002"}],
            "callback_url": "https://market.example/hook", "metadata": {"order": 1},
            "intro_text": "Hi {counterpart}"}
    new = parse_create_request(body, settings)
    assert [(p.number, p.display_name) for p in new.participants] == [
        ("447400100001", "Rita"), ("447400100002", None)]
    assert new.ttl_seconds == 600
    assert (new.callback_url, dict(new.metadata), new.intro_text) == (
        "https://market.example/hook", {"order": 1}, "Hi {counterpart}")
    assert parse_create_request({**TWO, "ttl_seconds": 3600.0}, settings).ttl_seconds == 3600


@pytest.mark.parametrize(
    ("args", "field", "problem"),
    [
        ({"sort": "asc", "limit": "0"}, "sort", "is not a known parameter"),
        ({"status": "done", "limit": "0"}, "status",
         "must be one of pending, active, failed, closed, expired"),
        ({"participant": "+44 12"}, "participant", "not a possible phone number for its country"),
        *(({"limit": bad}, "limit", "must be a whole number from 1 to 100")
          for bad in ["0", "101", "abc", "1_0", " 5", "\u00b2", "1" * 5000]),
        ({"cursor": "bm9wZQ"}, "cursor", "is not a cursor this API gave out"),
    ],
)
def test_a_bad_list_query_names_its_parameter(args, field, problem):
    with pytest.raises(RequestError) as info:
        parse_list_query(args)
    assert (info.value.field, info.value.problem) == (field, problem)


def test_a_list_query_yields_typed_values_and_a_cursor_round_trips():
    cursor = encode_cursor((1700000000.25, "a" * 32))
    assert decode_cursor(cursor) == (1700000000.25, "a" * 32)
    query = parse_list_query({"status": "closed", "participant": "+447400100001",
                              "limit": "007", "cursor": cursor})
    assert (query.status, query.participant, query.limit, query.cursor) == (
        ConversationStatus.CLOSED, "447400100001", 7, (1700000000.25, "a" * 32))
    default = parse_list_query({})
    assert (default.status, default.participant, default.limit, default.cursor) == (
        None, None, 50, None)


def test_the_mask_is_the_requests_or_else_the_deployments(make_settings):
    from shared.masking import ContactKind

    settings = make_settings(SMSPROXY_MASK_KINDS="email")
    assert parse_create_request(TWO, settings).mask == {ContactKind.EMAIL}
    assert parse_create_request({**TWO, "mask": None}, settings).mask == {ContactKind.EMAIL}
    assert parse_create_request({**TWO, "mask": []}, settings).mask == frozenset()
    chosen = parse_create_request({**TWO, "mask": ["link", "phone"]}, settings)
    assert chosen.mask == {ContactKind.LINK, ContactKind.PHONE}
    stored = chosen.build(1.0)
    from shared.domain import Conversation

    assert Conversation.from_json(stored.to_json()).mask == chosen.mask


def test_conversation_ids_are_short_url_safe_and_unguessable_and_old_ids_stay_valid():
    import base64
    import re

    from shared.api_models import CONVERSATION_ID_PATTERN

    ids = {new_conversation_id() for _ in range(2000)}
    assert len(ids) == 2000
    for conversation_id in ids:
        assert re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id)
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", conversation_id)
        assert len(base64.urlsafe_b64decode(conversation_id)) == 12  # 96 random bits
    # ids given out before the upgrade (uuid4().hex) still name their conversations
    assert re.fullmatch(CONVERSATION_ID_PATTERN, "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f")
    for wrong in ("3F2B8C1E9D7A4B6C8E0F1A2B3C4D5E6F", "q3Zb8c1E9d7a4b6", "q3Zb8c1E9d7a4b6c+",
                  "q3Zb8c1E9d7a4b:c", "q3Zb8c1E9d7a4b6cq3Zb8c1E9d7a4b6c"):
        assert not re.fullmatch(CONVERSATION_ID_PATTERN, wrong)
    short = new_conversation_id()
    assert decode_cursor(encode_cursor((1.5, short))) == (1.5, short)
