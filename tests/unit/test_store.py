"""Allocation and routing rules on fakeredis (the Lua scripts run under lupa)."""

import itertools

import pytest

from shared.domain import Conversation, ConversationStatus, Participant
from shared.store import ConversationStore, PoolExhausted

IN_GB, IN_US = ("GB",), ("US",)
GB_POOL = ["447700900100", "447700900101", "447700900102"]


@pytest.fixture
def store(fake_redis):
    store = ConversationStore(fake_redis)
    for number in GB_POOL:
        store.add_pool_number(number, "GB")
    return store


def gb(n: int) -> str:
    return f"4474001{n:05d}"


def test_one_person_never_gets_the_same_proxy_twice(store):
    proxies = [store.allocate(f"c{i}", ((gb(0), IN_GB), (gb(i + 1), IN_GB)))[0] for i in range(3)]
    assert sorted(proxies) == GB_POOL
    with pytest.raises(PoolExhausted) as info:
        store.allocate("c9", ((gb(0), IN_GB), (gb(9), IN_GB)))
    assert info.value.index == 0


def test_k_numbers_serve_any_load_where_nobody_has_more_than_k(store):
    """The sizing rule: a heavy user with k conversations plus 200 pairs, all on 3 numbers."""
    allocated = {}
    for i in range(3):
        allocated[f"heavy{i}"] = (gb(0), gb(1000 + i), *store.allocate(
            f"heavy{i}", ((gb(0), IN_GB), (gb(1000 + i), IN_GB))))
    for i in range(200):
        a, b = gb(2000 + 2 * i), gb(2001 + 2 * i)
        allocated[f"pair{i}"] = (a, b, *store.allocate(f"pair{i}", ((a, IN_GB), (b, IN_GB))))
    for conversation_id, (a, b, proxy_a, proxy_b) in allocated.items():
        assert store.find_route(a, proxy_a) == conversation_id
        assert store.find_route(b, proxy_b) == conversation_id
    assert len({p for *_, p, _ in allocated.values()} | {p for *_, p in allocated.values()}) == 3


def test_allocation_is_idempotent_per_conversation(store):
    first = store.allocate("c1", ((gb(1), IN_GB), (gb(2), IN_GB)))
    assert store.allocate("c1", ((gb(1), IN_GB), (gb(2), IN_GB))) == first
    loads = {n.msisdn: n.routes for n in store.pool_numbers("GB")}
    assert sum(loads.values()) == 2


def test_least_loaded_number_first_spreads_traffic(store):
    used = [store.allocate(f"c{i}", ((gb(2 * i), IN_GB), (gb(2 * i + 1), IN_GB))) for i in range(3)]
    assert {p for pair in used for p in pair} == set(GB_POOL)


def test_pair_gets_its_previous_numbers_back_when_free(store):
    conversation = _conversation(store, "c1", gb(1), gb(2))
    first = (conversation.participants[0].proxy_number, conversation.participants[1].proxy_number)
    # someone else takes other numbers in between
    store.allocate("other", ((gb(7), IN_GB), (gb(8), IN_GB)))
    store.finish("c1", ConversationStatus.CLOSED)
    assert store.allocate("c2", ((gb(1), IN_GB), (gb(2), IN_GB))) == first


def test_release_frees_routes_once_and_only_its_own(store):
    conversation = _conversation(store, "c1", gb(1), gb(2))
    proxy = conversation.participants[0].proxy_number
    assert store.finish("c1", ConversationStatus.CLOSED).status is ConversationStatus.CLOSED
    assert store.find_route(gb(1), proxy) is None
    assert store.finish("c1", ConversationStatus.CLOSED) is None  # already over
    assert all(n.routes == 0 for n in store.pool_numbers("GB"))
    # A newer conversation on the same route is untouched by a stale release of the old one.
    store.allocate("c2", ((gb(1), IN_GB), (gb(2), IN_GB)))
    assert store.release(conversation) == 0
    assert store.find_route(gb(1), proxy) == "c2"


def test_expiry_index_finds_due_live_conversations(store):
    _conversation(store, "c1", gb(1), gb(2), expires_at=100.0)
    _conversation(store, "c2", gb(3), gb(4), expires_at=500.0)
    assert store.due_for_expiry(now=200.0) == ["c1"]
    store.finish("c1", ConversationStatus.EXPIRED)
    assert store.due_for_expiry(now=200.0) == []


def test_transition_returns_none_for_unknown(store):
    assert store.transition("nope", lambda c: c) is None


def _conversation(store, conversation_id, a, b, expires_at=1e12):
    pending = Conversation(
        id=conversation_id,
        participants=(Participant(a, country="GB"), Participant(b, country="GB")),
        status=ConversationStatus.PENDING,
        created_at=1.0,
        ttl_seconds=3600,
    )
    store.add(pending)
    proxy_a, proxy_b = store.allocate(conversation_id, ((a, IN_GB), (b, IN_GB)))
    return store.transition(
        conversation_id,
        lambda c: c.with_status(
            ConversationStatus.ACTIVE,
            participants=(Participant(a, proxy_a, "GB"), Participant(b, proxy_b, "GB")),
            expires_at=expires_at,
        ),
    )


def test_countries_are_separate_pools(store):
    store.add_pool_number("12015550100", "US")
    us_person, gb_person = "12015550199", gb(1)
    proxy_us, proxy_gb = store.allocate("c1", ((us_person, IN_US), (gb_person, IN_GB)))
    assert proxy_us == "12015550100"
    assert proxy_gb in GB_POOL
    with pytest.raises(PoolExhausted) as info:
        store.allocate("c2", ((us_person, IN_US), (gb(2), IN_GB)))
    assert info.value.index == 0


def test_every_pair_of_a_small_world_routes_to_its_own_conversation(store):
    people = [gb(i) for i in range(4)]  # each talks to the 3 others: exactly k=3 live each
    for a, b in itertools.combinations(people, 2):
        store.allocate(f"{a}-{b}", ((a, IN_GB), (b, IN_GB)))
    for a, b in itertools.combinations(people, 2):
        routes_a = {v: c for v, c in store._redis.hgetall(store.keys.routes(a)).items()}
        assert f"{a}-{b}" in routes_a.values()
