"""How a conversation is stored: a small hash of short fields when every value fits Redis's
compact encoding, JSON otherwise, and the JSON of records written before the hash layout."""

import json

import pytest

from shared.conversation_store import ConversationStore
from shared.domain import (
    LISTPACK_VALUE_BYTES,
    Conversation,
    ConversationStatus,
    Participant,
)
from shared.keys import Keys
from shared.masking import ContactKind
from shared.routes import RouteTable

KEYS = Keys()


def conversation(**changes):
    base = Conversation(
        id="q3Zb-8c1E9d7a4_6",
        participants=(
            Participant("447400100001", "447700900001", "GB", "Rita"),
            Participant("447400100002", "447700900002", "GB"),
        ),
        status=ConversationStatus.ACTIVE,
        created_at=1700000000.123456,
        ttl_seconds=3600,
        expires_at=1700003600.5,
        client="rides",
    )
    return Conversation(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


@pytest.mark.parametrize("changes", [
    {},
    {"mask": frozenset()},  # masking nothing is not the same as the deployment's default
    {"mask": frozenset({ContactKind.EMAIL, ContactKind.PHONE})},
    {"metadata": {"ride": 42}, "callback_url": "https://m.example/cb", "intro_text": "Hi"},
    {"status": ConversationStatus.PENDING, "expires_at": None, "client": None,
     "participants": (Participant("447400100001"), Participant("447400100002"))},
    {"status": ConversationStatus.FAILED, "failure_reason": "pool_exhausted"},
])
def test_a_conversation_round_trips_through_its_hash(changes):
    original = conversation(**changes)
    fields = original.to_fields()
    assert fields is not None and "id" not in fields  # the key holds the id
    assert Conversation.from_fields(original.id, fields) == original
    assert Conversation.from_json(original.to_json()) == original


def test_a_value_too_long_for_a_listpack_keeps_the_record_as_json(fake_redis):
    long_url = "https://marketplace.example/" + "x" * LISTPACK_VALUE_BYTES
    assert conversation(callback_url=long_url).to_fields() is None
    store = ConversationStore(fake_redis, RouteTable(fake_redis))
    store.add(conversation(callback_url=long_url, status=ConversationStatus.PENDING))
    assert fake_redis.type(KEYS.conversation("q3Zb-8c1E9d7a4_6")) == "string"
    assert store.get("q3Zb-8c1E9d7a4_6").callback_url == long_url
    # a change that makes every value fit turns it into a hash, and back
    store.transition("q3Zb-8c1E9d7a4_6", lambda c: conversation(callback_url=None))
    assert fake_redis.type(KEYS.conversation("q3Zb-8c1E9d7a4_6")) == "hash"
    store.transition("q3Zb-8c1E9d7a4_6", lambda c: conversation(callback_url=long_url))
    assert store.get("q3Zb-8c1E9d7a4_6") == conversation(callback_url=long_url)


def test_a_record_in_the_json_layout_is_read_and_becomes_a_hash_at_its_next_change(fake_redis):
    old = conversation(id="3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f")
    key = KEYS.conversation(old.id)
    fake_redis.set(key, json.dumps({
        "id": old.id,
        "participants": [{"number": p.number, "proxy_number": p.proxy_number,
                          "country": p.country, "display_name": p.display_name}
                         for p in old.participants],
        "status": "active", "created_at": old.created_at, "ttl_seconds": old.ttl_seconds,
        "expires_at": old.expires_at, "failure_reason": None, "callback_url": None,
        "metadata": {}, "intro_text": None, "client": "rides",
    }))
    fake_redis.zadd(KEYS.expiry(), {old.id: old.expires_at})
    store = ConversationStore(fake_redis, RouteTable(fake_redis))
    assert store.get(old.id) == old
    assert list(store.live_conversations()) == [old]
    closed = store.finish(old.id, ConversationStatus.CLOSED)
    assert closed is not None and closed.status is ConversationStatus.CLOSED
    assert fake_redis.type(key) == "hash" and store.get(old.id) == closed
    assert fake_redis.ttl(key) > 0  # finished: it lasts the retention, as before


def pending_of(conversation_id, client="rides"):
    return conversation(id=conversation_id, status=ConversationStatus.PENDING, expires_at=None,
                        client=client)


def test_the_cap_counts_what_the_old_live_set_holds_and_each_end_once(fake_redis):
    store = ConversationStore(fake_redis, RouteTable(fake_redis))
    # two live conversations counted by the set of the release before the count
    fake_redis.sadd(KEYS.client_live("rides"), "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f", "0" * 32)
    for old in ("3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f", "0" * 32):
        fake_redis.hset(KEYS.conversation(old), mapping=pending_of(old).to_fields())
    store.add(pending_of("newnewnewnewnew1"), max_live=3)
    assert store.live_count("rides") == 3
    from shared.conversation_store import LiveConversationCap
    with pytest.raises(LiveConversationCap):
        store.add(pending_of("newnewnewnewnew2"), max_live=3)
    # an old one ends: it leaves the set, not the count; ending it again changes nothing
    store.finish("0" * 32, ConversationStatus.CLOSED)
    store.redact("0" * 32, "447400100001")  # a change of a finished one
    assert fake_redis.scard(KEYS.client_live("rides")) == 1
    assert fake_redis.get(KEYS.client_live_count("rides")) == "1"
    store.add(pending_of("newnewnewnewnew2"), max_live=3)
    assert store.live_count("rides") == 3
    # a new one discarded (a lost idempotency race) and one that ends give their places back
    store.discard(pending_of("newnewnewnewnew2"))
    store.discard(pending_of("newnewnewnewnew2"))  # nothing left to give back
    store.finish("newnewnewnewnew1", ConversationStatus.FAILED, "x")
    store.finish("newnewnewnewnew1", ConversationStatus.FAILED, "x")
    assert store.live_count("rides") == 1
    assert fake_redis.get(KEYS.client_live_count("rides")) == "0"
