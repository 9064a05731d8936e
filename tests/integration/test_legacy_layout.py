"""A conversation stored by the release before the compact layout (issue 17) keeps working after
an upgrade in place: it routes, lists, shows its trail, closes, gives its pair their sticky
proxies, and erases. The old layout is written here key by key, as that release wrote it: a
32-hex id, the record as JSON, a person's listing as a sorted set, a pair key, intro records
that name their conversation and kind."""

from __future__ import annotations

import json

import pytest

from shared.domain import (
    Conversation,
    ConversationStatus,
    InboundSms,
    Participant,
    new_conversation_id,
)
from shared.keys import Keys
from shared.outbound import intro_ids
from shared.reassembly import Reassembled
from shared.wiring import Services
from tests.doubles import FakeVonage

pytestmark = pytest.mark.integration

KEYS = Keys()
OLD_ID = "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"
A, B = "447400100001", "447400100002"
POOL = ("447700900100", "447700900101", "447700900102")
PROXY_A, PROXY_B = POOL[1], POOL[2]  # not what the least-loaded rule picks first
CREATED, EXPIRES, RETENTION = 1796000000.1234567, 4102444800.5, 30 * 24 * 3600


def write_old_layout(r) -> None:
    """One active conversation of client `rides` between A and B, its intros delivered."""
    r.set(KEYS.conversation(OLD_ID), json.dumps({
        "id": OLD_ID,
        "participants": [
            {"number": A, "proxy_number": PROXY_A, "country": "GB", "display_name": "Rita"},
            {"number": B, "proxy_number": PROXY_B, "country": "GB"},
        ],
        "status": "active", "created_at": CREATED, "ttl_seconds": 86400,
        "expires_at": EXPIRES, "client": "rides",
    }, separators=(",", ":")))
    for person, proxy in ((A, PROXY_A), (B, PROXY_B)):
        r.hset(KEYS.routes(person), proxy, OLD_ID)  # no expiry: routes had none
        r.hincrby(KEYS.number(proxy), "routes", 1)
        r.zincrby(KEYS.pool("GB"), 1, proxy)
        r.zadd(KEYS.person_conversations(person), {OLD_ID: CREATED})
        r.expire(KEYS.person_conversations(person), RETENTION)
    r.hset(KEYS.pair(A, B), mapping={A: PROXY_A, B: PROXY_B})
    r.expire(KEYS.pair(A, B), RETENTION)
    r.zadd(KEYS.client_conversations("rides"), {OLD_ID: CREATED})
    r.sadd(KEYS.client_live("rides"), OLD_ID)
    r.zadd(KEYS.expiry(), {OLD_ID: EXPIRES})
    for side, (proxy, to) in enumerate(((PROXY_A, A), (PROXY_B, B))):
        intro = intro_ids(OLD_ID)[side]
        r.hset(KEYS.outbound(intro), mapping={
            "state": "delivered", "conversation_id": OLD_ID, "kind": "intro", "from": proxy,
            "to": to, "created_at": str(CREATED), "attempts": "1", "expected_parts": "1",
            "vonage_ids": json.dumps([f"0A00000{side}"]), "parts": "1",
            "submitted_at": str(CREATED + 1),
            "receipts": json.dumps({f"0A00000{side}": "delivered"}),
            "receipt_at": str(CREATED + 2),
        })
        r.expire(KEYS.outbound(intro), RETENTION)


@pytest.fixture
def svc(pooled_services: Services, real_redis) -> Services:
    pooled_services.inventory.add(POOL[2], "GB")  # the pair's old proxies: POOL[1] and POOL[2]
    write_old_layout(real_redis)
    return pooled_services


def relay(svc: Services, sender: str, to: str, message_id: str, text: str) -> list[str]:
    message = InboundSms.from_params(
        {"msisdn": sender, "to": to, "messageId": message_id, "text": text})
    whole = svc.reassembler.reassemble(message)
    assert isinstance(whole, Reassembled)
    carried = svc.inbound.handle(whole)
    svc.reassembler.release(whole)
    return list(carried.sends)


def test_an_old_conversation_routes_lists_closes_and_erases(svc, real_redis):
    store, conversations = svc.conversation_store, svc.conversations
    old = store.get(OLD_ID)
    assert old is not None and old.status is ConversationStatus.ACTIVE
    assert old.participants[0].display_name == "Rita"

    # routes: A's text to their proxy reaches B from B's proxy, once
    assert svc.routes.find(A, PROXY_A) == OLD_ID
    (send,) = relay(svc, A, PROXY_A, "m-old-1", "hello")
    owed = svc.messages.outbound(send)
    assert owed is not None
    assert (owed.sender, owed.recipient, owed.conversation_id) == (PROXY_B, B, OLD_ID)

    # lists: by client, by participant; the trail derives the old intros' ids
    page, _ = store.page(client="rides")
    assert [c.id for c in page] == [OLD_ID]
    by_person, _ = store.page(client="rides", participant=A)
    assert [c.id for c in by_person] == [OLD_ID]
    trail = svc.messages.trail(OLD_ID, intro_ids(OLD_ID))
    assert [(e.record, getattr(e, "kind", None)) for e in trail[:2]] == [
        ("out", "intro"), ("out", "intro")]
    assert [getattr(e, "state", None) for e in trail[:2]] == ["delivered", "delivered"]
    assert store.live_count("rides") == 1

    # closes: routes freed, counts back, the record now a hash
    closed = conversations.close(OLD_ID)
    assert closed is not None and closed.status is ConversationStatus.CLOSED
    assert svc.routes.find(A, PROXY_A) is None and svc.routes.find(B, PROXY_B) is None
    assert all(svc.inventory.size("GB") and real_redis.zscore(KEYS.pool("GB"), n) == 0
               for n in POOL)
    assert real_redis.type(KEYS.conversation(OLD_ID)) == "hash"
    assert store.get(OLD_ID) == closed and store.live_count("rides") == 0
    after = [svc.messages.outbound(i) for i in relay(svc, A, PROXY_A, "m-old-2", "anyone?")]
    assert all(o is None or o.recipient != B for o in after)  # out of session: not relayed

    # the pair's next conversation gets the proxies of the old one (from its record)
    fresh = new_conversation(svc)
    established = conversations.establish(fresh.id, FakeVonage())
    assert established.conversation is not None
    assert [p.proxy_number for p in established.conversation.participants] == [PROXY_A, PROXY_B]
    assert len(fresh.id) == 16

    # erases: both conversations lose A; nothing names A afterwards
    erased = conversations.erase_participant(A, "rides")
    assert erased.conversations == 2 and [c.id for c in erased.closed] == [fresh.id]
    for key in real_redis.keys("*"):
        assert A not in key, key
        value = real_redis.dump(key) or b""
        assert A.encode() not in value, key
    again = conversations.erase_participant(A, "rides")
    assert (again.conversations, again.messages, again.keys) == (0, 0, 0)


def new_conversation(svc: Services) -> Conversation:
    conversation = Conversation(
        id=new_conversation_id(),
        participants=(Participant(A), Participant(B)),
        status=ConversationStatus.PENDING, created_at=CREATED + 10, ttl_seconds=600,
        client="rides",
    )
    svc.conversation_store.add(conversation)
    return conversation
