"""Conversation lifecycle rules: fallback, buying on demand, intro text, activity, callbacks."""

import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.api_models import RequestError, parse_create_request
from shared.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    conversation_event,
    out_of_session_event,
    sign_event,
)
from shared.domain import Conversation, ConversationStatus, InboundSms, Participant
from shared.messages import MessageLog
from shared.outbound import intro_id
from shared.vonage_gateway import AvailableNumber, VonageFailure
from shared.wiring import Services
from tests.doubles import FakeVonage
from tests.shared.conftest import A as WORLD_A
from tests.shared.conftest import B as WORLD_B

GB_A, GB_B, US_C = "447400100001", "447400100002", "12015550199"


def build(fake_redis, settings, pool=(("447700900100", "GB"),)):
    svc = Services.from_settings(settings, fake_redis)
    for number, country in pool:
        svc.inventory.add(number, country)
    return svc, svc.conversations, svc.counters


def pending(svc, conversation_id, a, b, **extra):
    conversation = Conversation(
        id=conversation_id, participants=(Participant(a), Participant(b)),
        status=ConversationStatus.PENDING, created_at=float(len(conversation_id)),
        ttl_seconds=3600, **extra,
    )
    svc.conversation_store.add(conversation)
    return conversation


def test_geo_match_prefers_own_country(fake_redis, settings):
    svc, conversations, _ = build(
        fake_redis, settings, pool=(("447700900100", "GB"), ("12015550100", "US")))
    pending(svc, "c1", GB_A, US_C)
    active = conversations.establish("c1", FakeVonage()).conversation
    assert [p.proxy_number for p in active.participants] == ["447700900100", "12015550100"]


def test_without_fallback_a_country_with_no_pool_fails(fake_redis, settings):
    svc, conversations, counters = build(fake_redis, settings)
    pending(svc, "c1", GB_A, US_C)
    outcome = conversations.establish("c1", FakeVonage())
    assert outcome.changed and outcome.conversation.status is ConversationStatus.FAILED
    assert outcome.conversation.failure_reason == "pool_exhausted"
    assert counters.snapshot()["smsproxy.pool.exhausted"] == 1


def test_with_fallback_another_countrys_number_is_used(fake_redis, make_settings):
    svc, conversations, _ = build(fake_redis, make_settings(SMSPROXY_COUNTRY_FALLBACK="true"))
    pending(svc, "c1", GB_A, US_C)
    active = conversations.establish("c1", FakeVonage()).conversation
    assert active.status is ConversationStatus.ACTIVE
    assert active.participants[1].proxy_number == "447700900100"


def test_pool_short_buys_on_demand_when_allowed(fake_redis, make_settings):
    svc, conversations, counters = build(
        fake_redis, make_settings(SMSPROXY_BUY_ON_DEMAND="true", SMSPROXY_POOL_MAXIMUMS="GB=5"))
    vonage = FakeVonage(available=[AvailableNumber("447700900150", "GB", "1.25")])
    pending(svc, "c1", GB_A, GB_B)
    pending(svc, "c2", GB_A, "447400100003")  # A's second conversation needs a second number
    conversations.establish("c1", vonage)
    second = conversations.establish("c2", vonage).conversation
    assert second.status is ConversationStatus.ACTIVE
    assert second.participants[0].proxy_number == "447700900150"
    assert [n.msisdn for n in vonage.owned] == ["447700900150"]
    assert vonage.owned[0].inbound_url == "http://127.0.0.1:9/webhooks/inbound-sms"
    assert counters.snapshot()["smsproxy.pool.bought"] == 1


def test_buying_on_demand_stops_at_the_ceiling_and_never_buys_where_there_is_none(
    fake_redis, make_settings
):
    # GB may hold 1 number (it has one) and US (no numbers) has no maximum: with no budget,
    # neither buys.
    svc, conversations, counters = build(fake_redis, make_settings(
        SMSPROXY_BUY_ON_DEMAND="true", SMSPROXY_POOL_MAXIMUMS="GB=1"))
    vonage = FakeVonage(available=[AvailableNumber("447700900150", "GB", "1.25"),
                                   AvailableNumber("12015550150", "US", "0.90")])
    pending(svc, "c1", GB_A, GB_B)
    pending(svc, "c2", GB_A, "447400100003")
    conversations.establish("c1", vonage)
    assert conversations.establish("c2", vonage).conversation.failure_reason == "pool_exhausted"
    assert vonage.owned == []
    pending(svc, "c3", US_C, "12025550104")
    assert conversations.establish("c3", vonage).conversation.failure_reason == "pool_exhausted"
    assert vonage.owned == []
    assert "smsproxy.pool.bought" not in counters.snapshot()


def test_intro_text_per_conversation(fake_redis, settings):
    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B, intro_text="Your courier {counterpart} - reply here.")
    svc.conversation_store.transition("c1", lambda c: c.with_status(c.status, participants=(
        Participant(GB_A), Participant(GB_B, display_name="Sam"))))
    conversations.establish("c1", FakeVonage())
    first = MessageLog(fake_redis).outbound("intro-c1-0")
    assert first.text == "Your courier Sam - reply here."


def test_activity_extends_expiry_when_enabled(fake_redis, make_settings, monkeypatch):
    settings = make_settings(SMSPROXY_EXTEND_ON_ACTIVITY="true")
    svc, conversations, counters = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    active = conversations.establish("c1", FakeVonage()).conversation
    monkeypatch.setattr("shared.inbound.now", lambda: active.expires_at + 100 - 3600)
    svc.inbound.handle(svc.reassembler.reassemble(InboundSms.from_params(
        {"msisdn": GB_A, "to": active.participants[0].proxy_number, "messageId": "m"})))
    assert svc.conversation_store.get("c1").expires_at == pytest.approx(active.expires_at + 100)


def test_listing_filters_and_pages_without_gaps(fake_redis, settings):
    svc, _, _ = build(fake_redis, settings)
    for i in range(25):
        conversation = Conversation(
            id=f"{i:032x}", participants=(Participant(GB_A if i % 2 else GB_B), Participant(US_C)),
            status=ConversationStatus.PENDING, created_at=1000.0 + i // 3, ttl_seconds=60)
        svc.conversation_store.add(conversation)
    seen, cursor = [], None
    while True:
        page, cursor = svc.conversation_store.page(limit=4, cursor=cursor)
        seen += [c.id for c in page]
        if cursor is None or not page:
            break
    assert len(seen) == len(set(seen)) == 25
    mine, _ = svc.conversation_store.page(participant=GB_A, limit=100)
    assert len(mine) == 12
    svc.conversation_store.finish(f"{3:032x}", ConversationStatus.CLOSED)
    closed, _ = svc.conversation_store.page(status=ConversationStatus.CLOSED, limit=10)
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
    event = conversation_event(conversation, "active", (False, False))
    signed = sign_event(event, "cb-secret", at=1700000000)
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


# -- establishing: Number Insight, allocation, intros ------------------------------------------


def test_establish_allocates_and_owes_two_intros(world):
    intro_ids, conversation = world.start()
    assert conversation.status is ConversationStatus.ACTIVE
    assert intro_ids == [intro_id(conversation.id, 0), intro_id(conversation.id, 1)]
    first = world.services.messages.outbound(intro_ids[0])
    assert first.recipient == WORLD_A
    assert first.sender == conversation.participants[0].proxy_number
    assert "Driver" in first.text
    # running it again owes nothing new and keeps the same proxies
    outcome = world.services.conversations.establish(conversation.id, world.vonage)
    assert not outcome.changed
    assert list(outcome.intro_ids) == intro_ids
    assert world.services.conversation_store.get(conversation.id) == conversation


def test_invalid_number_fails_the_conversation_naming_the_participant(world):
    world.vonage.invalid.add(WORLD_B)
    intro_ids, conversation = world.start()
    assert intro_ids == []
    assert conversation.status is ConversationStatus.FAILED
    assert conversation.failure_reason.startswith("participant 2: invalid number")


def test_transient_insight_failure_propagates_for_retry(world):
    world.vonage.basic_insight = lambda msisdn: (_ for _ in ()).throw(
        VonageFailure("1", "busy", transient=True))
    with pytest.raises(VonageFailure):
        world.start()


def test_expire_due_ends_conversations_and_frees_routes(world, monkeypatch):
    _, conversation = world.start()
    monkeypatch.setattr("shared.conversations.now", lambda: conversation.expires_at + 1)
    conversations, store = world.services.conversations, world.services.conversation_store
    assert [c.id for c in conversations.expire_due()] == [conversation.id]
    assert store.get(conversation.id).status is ConversationStatus.EXPIRED
    a = conversation.participants[0]
    assert world.services.routes.find(a.number, a.proxy_number) is None


def test_pending_conversations_are_indexed_until_they_leave_pending(world):
    store = world.services.conversation_store
    pending = Conversation(id="p" * 32, participants=(Participant(WORLD_A), Participant(WORLD_B)),
                           status=ConversationStatus.PENDING, created_at=5.0, ttl_seconds=3600)
    store.add(pending)
    assert store.pending_since(10.0) == [pending.id]
    assert [c.id for c in store.live_conversations()] == [pending.id]
    world.services.conversations.establish(pending.id, world.vonage)
    assert store.pending_since(10.0) == []
    assert [c.id for c in store.live_conversations()] == [pending.id]  # now via expiry


class CountingVonage(FakeVonage):
    """Counts Number Insight calls per number; `busy` numbers fail transiently `busy` times."""

    def __init__(self, busy: dict[str, int] | None = None) -> None:
        super().__init__()
        self.lookups: dict[str, int] = {}
        self.busy = dict(busy or {})

    def basic_insight(self, msisdn):
        self.lookups[msisdn] = self.lookups.get(msisdn, 0) + 1
        if self.busy.get(msisdn, 0) > 0:
            self.busy[msisdn] -= 1
            raise VonageFailure("1", "busy", transient=True)
        return super().basic_insight(msisdn)


def test_a_retried_create_redoes_only_the_lookup_that_failed(fake_redis, settings):
    svc, conversations, counters = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = CountingVonage(busy={GB_B: 3})
    for _ in range(3):
        with pytest.raises(VonageFailure):
            conversations.establish("c1", vonage)
    assert conversations.establish("c1", vonage).conversation.status is ConversationStatus.ACTIVE
    assert vonage.lookups == {GB_A: 1, GB_B: 4}


def test_a_participant_seen_recently_costs_no_lookup(fake_redis, settings):
    svc, conversations, counters = build(fake_redis, settings, pool=(
        ("447700900100", "GB"), ("447700900101", "GB")))
    vonage = CountingVonage()
    pending(svc, "c1", GB_A, GB_B)
    conversations.establish("c1", vonage)
    pending(svc, "c2", GB_A, "447400100003")
    conversations.establish("c2", vonage)
    assert vonage.lookups[GB_A] == 1
    assert counters.snapshot()["smsproxy.insight.cached"] == 1
    # the answer is a field of the person's routes hash, with the time it is good until
    country, until = fake_redis.hget(f"smsproxy:routes:{GB_A}", "ni").split()
    assert country == "GB"
    assert 0 < int(until) - time.time() <= settings.insight_cache_seconds


def test_each_participants_lookup_has_its_own_attempts(fake_redis, settings):
    from shared.conversations import INSIGHT_MAX_ATTEMPTS

    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    # A's lookup uses all but one of its attempts; B's still has all of its own
    vonage = CountingVonage(busy={GB_A: INSIGHT_MAX_ATTEMPTS - 1, GB_B: INSIGHT_MAX_ATTEMPTS - 1})
    while True:
        try:
            outcome = conversations.establish("c1", vonage)
            break
        except VonageFailure:
            continue
    assert outcome.conversation.status is ConversationStatus.ACTIVE


def test_a_lookup_busy_past_its_attempts_fails_the_conversation(fake_redis, settings):
    from shared.conversations import INSIGHT_MAX_ATTEMPTS

    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = CountingVonage(busy={GB_B: 100})
    for _ in range(INSIGHT_MAX_ATTEMPTS - 1):
        with pytest.raises(VonageFailure):
            conversations.establish("c1", vonage)
    outcome = conversations.establish("c1", vonage)
    assert outcome.changed
    assert outcome.conversation.failure_reason == "number_insight_unavailable"


class MeetingVonage(CountingVonage):
    """Each lookup waits until `together` lookups are in progress at once: lookups made one
    after the other break the barrier (its timeout) instead of meeting."""

    def __init__(self, together: int, timeout: float = 5.0) -> None:
        super().__init__()
        self.barrier = threading.Barrier(together, timeout=timeout)

    def basic_insight(self, msisdn):
        self.barrier.wait()
        return super().basic_insight(msisdn)


def test_with_a_fan_out_both_lookups_are_made_at_once(fake_redis, settings):
    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = MeetingVonage(together=2)
    with ThreadPoolExecutor(1) as fan_out:
        outcome = conversations.establish("c1", vonage, fan_out)
    assert outcome.conversation.status is ConversationStatus.ACTIVE
    assert vonage.lookups == {GB_A: 1, GB_B: 1}


def test_without_a_fan_out_the_lookups_are_made_one_after_the_other(fake_redis, settings):
    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = MeetingVonage(together=2, timeout=0.2)
    with pytest.raises(threading.BrokenBarrierError):
        conversations.establish("c1", vonage)


def test_side_by_side_a_busy_lookup_keeps_the_others_answer(fake_redis, settings):
    svc, conversations, counters = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = CountingVonage(busy={GB_A: 1})
    with ThreadPoolExecutor(1) as fan_out:
        with pytest.raises(VonageFailure):
            conversations.establish("c1", vonage, fan_out)
        outcome = conversations.establish("c1", vonage, fan_out)
    assert outcome.conversation.status is ConversationStatus.ACTIVE
    assert vonage.lookups == {GB_A: 2, GB_B: 1}  # B's answer was remembered on the first run
    assert counters.snapshot()["smsproxy.insight.cached"] == 1


@pytest.mark.parametrize("invalid", [0, 1])
def test_side_by_side_an_invalid_number_fails_naming_its_participant(
    fake_redis, settings, invalid
):
    svc, conversations, _ = build(fake_redis, settings)
    pending(svc, "c1", GB_A, GB_B)
    vonage = CountingVonage()
    vonage.invalid.add((GB_A, GB_B)[invalid])
    with ThreadPoolExecutor(1) as fan_out:
        outcome = conversations.establish("c1", vonage, fan_out)
    assert outcome.conversation.status is ConversationStatus.FAILED
    assert outcome.conversation.failure_reason.startswith(f"participant {invalid + 1}: invalid")


def test_a_create_that_never_finishes_fails_after_the_deadline(world):
    from shared.conversations import PENDING_DEADLINE_SECONDS

    store = world.services.conversation_store
    stuck = Conversation(id="s" * 32, participants=(Participant(WORLD_A), Participant(WORLD_B)),
                         status=ConversationStatus.PENDING, created_at=1000.0, ttl_seconds=3600)
    store.add(stuck)
    conversations = world.services.conversations
    assert conversations.fail_overdue(1000.0 + PENDING_DEADLINE_SECONDS - 1) == []
    (failed,) = conversations.fail_overdue(1000.0 + PENDING_DEADLINE_SECONDS + 1)
    assert failed.status is ConversationStatus.FAILED
    assert failed.failure_reason == "create_timeout"
    assert store.pending_since(1e12) == []


def test_a_participant_blocked_while_the_conversation_is_pending_fails_it(world):
    conversation = Conversation(
        id="d" * 32, participants=(Participant(WORLD_A), Participant(WORLD_B)),
        status=ConversationStatus.PENDING, created_at=1.0, ttl_seconds=3600,
    )
    world.services.conversation_store.add(conversation)
    world.services.blocked.block(WORLD_B, 2.0)
    outcome = world.services.conversations.establish(conversation.id, world.vonage)
    assert outcome.changed and outcome.conversation is not None
    assert outcome.conversation.status is ConversationStatus.FAILED
    assert outcome.conversation.failure_reason == "blocked"
    assert world.vonage.sent == []
