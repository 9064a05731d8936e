"""Retention is a setting, and no key naming a person outlives it (issue 12, item 7)."""

from __future__ import annotations

import pytest

from shared.domain import Conversation, ConversationStatus, MessageKind, OutboundSms, Participant
from shared.keys import Keys
from shared.wiring import Services

A, B = "447400100001", "447400100002"
KEEP = 1000
KEYS = Keys()


@pytest.fixture
def svc(fake_redis, make_settings) -> Services:
    services = Services.from_settings(
        make_settings(SMSPROXY_RETENTION_SECONDS=str(KEEP)), fake_redis)
    for number in ("447700900100", "447700900101"):
        services.inventory.add(number, "GB")
    return services


def pending(svc: Services, conversation_id: str = "c1", client: str | None = "rides"):
    conversation = Conversation(
        id=conversation_id, participants=(Participant(A), Participant(B)),
        status=ConversationStatus.PENDING, created_at=1.0, ttl_seconds=600, client=client,
    )
    svc.conversation_store.add(conversation)
    return conversation


def indexes(client: str = "rides") -> list[str]:
    # a person's listing is in their routes hash (which therefore outlives their live routes)
    return [KEYS.routes(A), KEYS.routes(B), KEYS.client_conversations(client)]


def test_a_new_conversations_indexes_expire_after_its_longest_possible_life(svc, fake_redis):
    pending(svc)
    for key in indexes():
        # its ttl, the pending allowance and the retention
        assert 600 + KEEP < fake_redis.ttl(key) <= 600 + 3600 + KEEP


def test_finishing_keeps_the_record_for_the_retention_and_never_shortens_an_index(
    svc, fake_redis
):
    pending(svc)
    before = {key: fake_redis.ttl(key) for key in indexes()}
    svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    assert 0 < fake_redis.ttl(KEYS.conversation("c1")) <= KEEP
    for key in indexes():
        assert fake_redis.ttl(key) == pytest.approx(before[key], abs=2)


def test_an_index_from_before_indexes_expired_gets_an_expiry(svc, fake_redis):
    pending(svc)
    fake_redis.persist(KEYS.routes(A))  # as an older release left it
    fake_redis.zadd(KEYS.person_conversations(A), {"c1": 1.0})  # that release's listing
    svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    assert 0 < fake_redis.ttl(KEYS.routes(A)) <= KEEP
    assert 0 < fake_redis.ttl(KEYS.person_conversations(A)) <= KEEP


def test_activity_that_extends_a_conversation_extends_its_indexes(svc, fake_redis):
    pending(svc)
    svc.conversation_store.transition("c1", lambda c: c.with_status(
        ConversationStatus.ACTIVE, expires_at=1e12))  # far beyond the first allowance
    for key in indexes():
        assert fake_redis.ttl(key) > 600 + 3600 + KEEP


def test_message_records_follow_the_setting_and_no_key_remembers_the_pair(svc, fake_redis):
    pending(svc)
    svc.routes.allocate("c1", ((A, ["GB"]), (B, ["GB"])))
    svc.messages.record_inbound("c1", "m1", A, 1, "hi")
    svc.messages.owe(OutboundSms("o1", "c1", MessageKind.RELAY, "447700900101", B, "hi"))
    for key in (KEYS.inbound("m1"), KEYS.outbound("o1"), KEYS.outbound_text("o1"),
                KEYS.conversation_log("c1")):
        assert 0 < fake_redis.ttl(key) <= KEEP, key
    # the sticky proxies come from the pair's conversations, which expire as above
    assert not fake_redis.exists(KEYS.pair(A, B))


def test_every_key_naming_a_person_has_an_expiry_or_goes_with_the_conversation(svc, fake_redis):
    pending(svc)
    first, second = svc.routes.allocate("c1", ((A, ["GB"]), (B, ["GB"])))
    svc.conversation_store.transition("c1", lambda c: c.with_status(
        ConversationStatus.ACTIVE, expires_at=2.0,
        participants=(Participant(A, first), Participant(B, second))))
    svc.conversation_store.finish("c1", ConversationStatus.EXPIRED)
    for key in fake_redis.keys("*"):
        if A in key or B in key:
            assert fake_redis.ttl(key) > 0, key
    # the routes were freed with the finish: what is left of routes:<number> is the listing
    for number in (A, B):
        assert fake_redis.hkeys(KEYS.routes(number)) == ["c:c1"]
