"""Allocation and routing rules on fakeredis (the Lua scripts run under lupa), with the
conversation records and pool inventory they work with."""

import itertools

import pytest

from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.routes import PoolExhausted

IN_GB, IN_US = ("GB",), ("US",)
GB_POOL = ["447700900100", "447700900101", "447700900102"]


@pytest.fixture
def svc(make_services):
    services = make_services()
    for number in GB_POOL:
        services.inventory.add(number, "GB")
    return services


def gb(n: int) -> str:
    return f"4474001{n:05d}"


def test_one_person_never_gets_the_same_proxy_twice(svc):
    allocate = svc.routes.allocate
    proxies = [allocate(f"c{i}", ((gb(0), IN_GB), (gb(i + 1), IN_GB)))[0] for i in range(3)]
    assert sorted(proxies) == GB_POOL
    with pytest.raises(PoolExhausted) as info:
        svc.routes.allocate("c9", ((gb(0), IN_GB), (gb(9), IN_GB)))
    assert info.value.index == 0


def test_k_numbers_serve_any_load_where_nobody_has_more_than_k(svc):
    """The sizing rule: a heavy user with k conversations plus 200 pairs, all on 3 numbers."""
    allocated = {}
    for i in range(3):
        allocated[f"heavy{i}"] = (gb(0), gb(1000 + i), *svc.routes.allocate(
            f"heavy{i}", ((gb(0), IN_GB), (gb(1000 + i), IN_GB))))
    for i in range(200):
        a, b = gb(2000 + 2 * i), gb(2001 + 2 * i)
        allocated[f"pair{i}"] = (a, b, *svc.routes.allocate(f"pair{i}", ((a, IN_GB), (b, IN_GB))))
    for conversation_id, (a, b, proxy_a, proxy_b) in allocated.items():
        assert svc.routes.find(a, proxy_a) == conversation_id
        assert svc.routes.find(b, proxy_b) == conversation_id
    assert len({p for *_, p, _ in allocated.values()} | {p for *_, p in allocated.values()}) == 3


def test_allocation_is_idempotent_per_conversation(svc):
    first = svc.routes.allocate("c1", ((gb(1), IN_GB), (gb(2), IN_GB)))
    assert svc.routes.allocate("c1", ((gb(1), IN_GB), (gb(2), IN_GB))) == first
    loads = {n.msisdn: n.routes for n in svc.inventory.numbers("GB")}
    assert sum(loads.values()) == 2


def test_least_loaded_number_first_spreads_traffic(svc):
    allocate = svc.routes.allocate
    used = [allocate(f"c{i}", ((gb(2 * i), IN_GB), (gb(2 * i + 1), IN_GB))) for i in range(3)]
    assert {p for pair in used for p in pair} == set(GB_POOL)


def test_pair_gets_its_previous_numbers_back_when_free(svc):
    conversation = _conversation(svc, "c1", gb(1), gb(2))
    first = (conversation.participants[0].proxy_number, conversation.participants[1].proxy_number)
    # someone else takes other numbers in between
    svc.routes.allocate("other", ((gb(7), IN_GB), (gb(8), IN_GB)))
    svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    assert svc.routes.allocate("c2", ((gb(1), IN_GB), (gb(2), IN_GB))) == first


def test_release_frees_routes_once_and_only_its_own(svc):
    conversation = _conversation(svc, "c1", gb(1), gb(2))
    proxy = conversation.participants[0].proxy_number
    closed = svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    assert closed.status is ConversationStatus.CLOSED
    assert svc.routes.find(gb(1), proxy) is None
    assert svc.conversation_store.finish("c1", ConversationStatus.CLOSED) is None  # already over
    assert all(n.routes == 0 for n in svc.inventory.numbers("GB"))
    # A newer conversation on the same route is untouched by a stale release of the old one.
    svc.routes.allocate("c2", ((gb(1), IN_GB), (gb(2), IN_GB)))
    assert svc.routes.release(conversation) == 0
    assert svc.routes.find(gb(1), proxy) == "c2"


def test_expiry_index_finds_due_live_conversations(svc):
    _conversation(svc, "c1", gb(1), gb(2), expires_at=100.0)
    _conversation(svc, "c2", gb(3), gb(4), expires_at=500.0)
    assert svc.conversation_store.due_for_expiry(now=200.0) == ["c1"]
    svc.conversation_store.finish("c1", ConversationStatus.EXPIRED)
    assert svc.conversation_store.due_for_expiry(now=200.0) == []


def test_transition_returns_none_for_unknown(svc):
    assert svc.conversation_store.transition("nope", lambda c: c) is None


def _conversation(svc, conversation_id, a, b, expires_at=1e12):
    pending = Conversation(
        id=conversation_id,
        participants=(Participant(a, country="GB"), Participant(b, country="GB")),
        status=ConversationStatus.PENDING,
        created_at=1.0,
        ttl_seconds=3600,
    )
    svc.conversation_store.add(pending)
    proxy_a, proxy_b = svc.routes.allocate(conversation_id, ((a, IN_GB), (b, IN_GB)))
    return svc.conversation_store.transition(
        conversation_id,
        lambda c: c.with_status(
            ConversationStatus.ACTIVE,
            participants=(Participant(a, proxy_a, "GB"), Participant(b, proxy_b, "GB")),
            expires_at=expires_at,
        ),
    )


def test_countries_are_separate_pools(svc):
    svc.inventory.add("12015550100", "US")
    us_person, gb_person = "12015550199", gb(1)
    proxy_us, proxy_gb = svc.routes.allocate("c1", ((us_person, IN_US), (gb_person, IN_GB)))
    assert proxy_us == "12015550100"
    assert proxy_gb in GB_POOL
    with pytest.raises(PoolExhausted) as info:
        svc.routes.allocate("c2", ((us_person, IN_US), (gb(2), IN_GB)))
    assert info.value.index == 0


def test_every_pair_of_a_small_world_routes_to_its_own_conversation(svc):
    people = [gb(i) for i in range(4)]  # each talks to the 3 others: exactly k=3 live each
    for a, b in itertools.combinations(people, 2):
        svc.routes.allocate(f"{a}-{b}", ((a, IN_GB), (b, IN_GB)))
    for a, b in itertools.combinations(people, 2):
        routes_a = {v: c for v, c in svc.redis.hgetall(Keys().routes(a)).items()}
        assert f"{a}-{b}" in routes_a.values()


def test_a_number_the_person_opted_out_of_is_not_free_for_them_even_when_sticky(svc):
    from shared.opt_outs import ParticipantState

    conversation = _conversation(svc, "c1", gb(1), gb(2))
    stopped = conversation.participants[0].proxy_number
    svc.opt_outs.change(gb(1), stopped, ParticipantState.OPTED_OUT, "stop-1")
    svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    again = svc.routes.allocate("c2", ((gb(1), IN_GB), (gb(2), IN_GB)))
    assert again[0] != stopped
    assert again[1] == conversation.participants[1].proxy_number  # the other keeps theirs


def test_rerouting_off_a_lost_number_skips_numbers_the_person_opted_out_of(svc):
    from shared.opt_outs import ParticipantState

    conversation = _conversation(svc, "c1", gb(1), gb(2))
    lost = conversation.participants[0].proxy_number
    others = [n for n in GB_POOL if n != lost]
    svc.opt_outs.change(gb(1), others[0], ParticipantState.OPTED_OUT, "stop-1")
    assert svc.routes.reroute("c1", gb(1), lost, IN_GB) == others[1]
    svc.opt_outs.change(gb(1), lost, ParticipantState.OPTED_OUT, "stop-2")
    svc.opt_outs.change(gb(1), others[1], ParticipantState.OPTED_OUT, "stop-3")
    assert svc.routes.reroute("c1", gb(1), others[1], IN_GB) is None


def test_a_pair_gets_back_the_proxies_of_its_last_conversation_from_its_records(svc):
    # A's first number is taken by another conversation, so that A and B's conversation gets
    # numbers the least-loaded rule alone would not give them again once everything is free
    other = _conversation(svc, "c0", gb(1), gb(3))
    first = _conversation(svc, "c1", gb(1), gb(2))
    assert first.participants[0].proxy_number != other.participants[0].proxy_number
    for conversation_id in ("c0", "c1"):
        svc.conversation_store.finish(conversation_id, ConversationStatus.CLOSED)
    again = _conversation(svc, "c2", gb(1), gb(2))
    assert [p.proxy_number for p in again.participants] == [
        p.proxy_number for p in first.participants]
    # in the other order, each person still gets their own
    svc.conversation_store.finish("c2", ConversationStatus.CLOSED)
    swapped = _conversation(svc, "c3", gb(2), gb(1))
    assert [p.proxy_number for p in swapped.participants] == [
        p.proxy_number for p in reversed(first.participants)]
    assert not svc.redis.keys("*pair*")  # nothing but the records remembers the pair


def test_an_erased_conversation_no_longer_makes_the_pair_sticky(svc):
    other = _conversation(svc, "c0", gb(1), gb(3))
    first = _conversation(svc, "c1", gb(1), gb(2))
    for conversation_id in ("c0", "c1"):
        svc.conversation_store.finish(conversation_id, ConversationStatus.CLOSED)
    svc.conversation_store.redact("c1", gb(1))  # the erasure's step on each record
    again = _conversation(svc, "c2", gb(1), gb(2))
    # the least-loaded rule again: the number c0 had, not the one c1 had
    assert again.participants[0].proxy_number == other.participants[0].proxy_number
    assert again.participants[0].proxy_number != first.participants[0].proxy_number
