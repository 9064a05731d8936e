"""Conversation lifecycle rules: fallback, buying on demand, intro text, activity, callbacks."""

import hashlib
import hmac
import json

import pytest

from shared.api_models import RequestError, parse_create_request
from shared.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    conversation_event,
    out_of_session_event,
    sign_event,
)
from shared.conversations import Conversations
from shared.domain import Conversation, ConversationStatus, InboundSms, Participant
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.pool import PoolKeeper, PoolPolicy
from shared.relay import Relay
from shared.store import ConversationStore
from shared.vonage_gateway import AvailableNumber
from tests.doubles import FakeVonage

GB_A, GB_B, US_C = "447400100001", "447400100002", "12015550199"


def build(fake_redis, settings, pool=(("447700900100", "GB"),)):
    store = ConversationStore(fake_redis)
    for number, country in pool:
        store.add_pool_number(number, country)
    messages, counters = MessageLog(fake_redis), Counters(fake_redis)
    keeper = PoolKeeper(fake_redis, store, messages, counters, PoolPolicy.from_settings(settings))
    return store, Conversations(store, messages, counters, settings, buyer=keeper), counters


def pending(store, conversation_id, a, b, **extra):
    conversation = Conversation(
        id=conversation_id, participants=(Participant(a), Participant(b)),
        status=ConversationStatus.PENDING, created_at=float(len(conversation_id)),
        ttl_seconds=3600, **extra,
    )
    store.add(conversation)
    return conversation


def test_geo_match_prefers_own_country(fake_redis, settings):
    store, conversations, _ = build(
        fake_redis, settings, pool=(("447700900100", "GB"), ("12015550100", "US")))
    pending(store, "c1", GB_A, US_C)
    active = conversations.establish("c1", FakeVonage()).conversation
    assert [p.proxy_number for p in active.participants] == ["447700900100", "12015550100"]


def test_without_fallback_a_country_with_no_pool_fails(fake_redis, settings):
    store, conversations, counters = build(fake_redis, settings)
    pending(store, "c1", GB_A, US_C)
    outcome = conversations.establish("c1", FakeVonage())
    assert outcome.changed and outcome.conversation.status is ConversationStatus.FAILED
    assert outcome.conversation.failure_reason == "pool_exhausted"
    assert counters.snapshot()["smsproxy.pool.exhausted"] == 1


def test_with_fallback_another_countrys_number_is_used(fake_redis, make_settings):
    store, conversations, _ = build(fake_redis, make_settings(SMSPROXY_COUNTRY_FALLBACK="true"))
    pending(store, "c1", GB_A, US_C)
    active = conversations.establish("c1", FakeVonage()).conversation
    assert active.status is ConversationStatus.ACTIVE
    assert active.participants[1].proxy_number == "447700900100"


def test_pool_short_buys_on_demand_when_allowed(fake_redis, make_settings):
    store, conversations, counters = build(
        fake_redis, make_settings(SMSPROXY_BUY_ON_DEMAND="true"))
    vonage = FakeVonage(available=[AvailableNumber("447700900150", "GB", "1.25")])
    pending(store, "c1", GB_A, GB_B)
    pending(store, "c2", GB_A, "447400100003")  # A's second conversation needs a second number
    conversations.establish("c1", vonage)
    second = conversations.establish("c2", vonage).conversation
    assert second.status is ConversationStatus.ACTIVE
    assert second.participants[0].proxy_number == "447700900150"
    assert [n.msisdn for n in vonage.owned] == ["447700900150"]
    assert vonage.owned[0].inbound_url == "http://127.0.0.1:9/webhooks/inbound-sms"
    assert counters.snapshot()["smsproxy.pool.bought"] == 1


def test_intro_text_per_conversation(fake_redis, settings):
    store, conversations, _ = build(fake_redis, settings)
    pending(store, "c1", GB_A, GB_B, intro_text="Your courier {counterpart} - reply here.")
    store.transition("c1", lambda c: c.with_status(c.status, participants=(
        Participant(GB_A), Participant(GB_B, display_name="Sam"))))
    conversations.establish("c1", FakeVonage())
    first = MessageLog(fake_redis).outbound("intro-c1-0")
    assert first.text == "Your courier Sam - reply here."


def test_activity_extends_expiry_when_enabled(fake_redis, make_settings, monkeypatch):
    settings = make_settings(SMSPROXY_EXTEND_ON_ACTIVITY="true")
    store, conversations, counters = build(fake_redis, settings)
    pending(store, "c1", GB_A, GB_B)
    active = conversations.establish("c1", FakeVonage()).conversation
    relay = Relay(fake_redis, store, MessageLog(fake_redis), counters, settings)
    monkeypatch.setattr("shared.relay.now", lambda: active.expires_at + 100 - 3600)
    relay.plan(relay.reassemble(InboundSms.from_params(
        {"msisdn": GB_A, "to": active.participants[0].proxy_number, "messageId": "m"})))
    assert store.get("c1").expires_at == pytest.approx(active.expires_at + 100)


def test_listing_filters_and_pages_without_gaps(fake_redis, settings):
    store, _, _ = build(fake_redis, settings)
    for i in range(25):
        conversation = Conversation(
            id=f"{i:032x}", participants=(Participant(GB_A if i % 2 else GB_B), Participant(US_C)),
            status=ConversationStatus.PENDING, created_at=1000.0 + i // 3, ttl_seconds=60)
        store.add(conversation)
    seen, cursor = [], None
    while True:
        page, cursor = store.page(limit=4, cursor=cursor)
        seen += [c.id for c in page]
        if cursor is None or not page:
            break
    assert len(seen) == len(set(seen)) == 25
    mine, _ = store.page(participant=GB_A, limit=100)
    assert len(mine) == 12
    store.finish(f"{3:032x}", ConversationStatus.CLOSED)
    closed, _ = store.page(status=ConversationStatus.CLOSED, limit=10)
    assert [c.id for c in closed] == [f"{3:032x}"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"intro_text": ""}, "intro_text"), ({"intro_text": "x" * 481}, "intro_text"),
     ({"callback_url": "https://market.example/hook"}, "callback_url")],
)
def test_create_request_rules(settings, extra, field):
    body = {"participants": [{"number": "+447400100001"}, {"number": "+447400100002"}], **extra}
    with pytest.raises(RequestError) as info:
        parse_create_request(body, settings)
    assert info.value.field == field


def test_callback_events_are_signed_over_timestamp_and_body(fake_redis, make_settings):
    settings = make_settings(SMSPROXY_CALLBACK_SECRET="cb-secret")
    parsed = parse_create_request(
        {"participants": [{"number": "+447400100001"}, {"number": "+447400100002"}],
         "callback_url": "https://market.example/hook"}, settings)
    conversation = parsed.build(created_at=5.0)
    signed = sign_event(conversation_event(conversation, "active"), "cb-secret", at=1700000000)
    expected = hmac.new(b"cb-secret", b"1700000000." + signed.body, hashlib.sha256).hexdigest()
    assert signed.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert signed.headers[TIMESTAMP_HEADER] == "1700000000"
    event = json.loads(signed.body)
    assert event["type"] == "conversation.active"
    assert event["conversation"]["participants"][0]["number"] == "+447400100001"


def test_out_of_session_event_carries_numbers_but_no_body():
    event = out_of_session_event("447400100001", "447700900100", "m-9")
    assert event == {"id": "out_of_session:m-9", "type": "message.out_of_session",
                     "from": "+447400100001", "to": "+447700900100", "message_id": "m-9"}
