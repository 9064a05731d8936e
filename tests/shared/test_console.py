"""The console's logic: sessions, the audit, search parsing, what the pages show of numbers."""

from __future__ import annotations

import pytest

from shared.clients import ApiClients
from shared.console import (
    AUDIT_CAP,
    ConsoleAction,
    ConsoleAudit,
    ConsoleSessions,
    SearchError,
    overview,
    parse_search,
    pool_by_country,
    trail_rows,
)
from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.messages import InboundRecord, OutboundRecord, _part_receipts
from shared.metrics import Counters
from shared.pool_inventory import PoolInventory

TOKEN = "rides-0123456789abcdef0123456789abcdef"
CLIENTS = ApiClients.parse(f"rides:{TOKEN}")


def test_a_session_is_found_until_its_lifetime_ends(fake_redis):
    sessions = ConsoleSessions(fake_redis, lifetime_seconds=60)
    started = sessions.start(CLIENTS.clients[0], at=1000.0)
    assert sessions.find(started.id, CLIENTS, at=1059.0) == started
    assert sessions.find(started.id, CLIENTS, at=1060.0) is None
    assert fake_redis.ttl(Keys().console_session(started.id)) == 60


def test_a_session_dies_with_sign_out_a_rotated_token_or_a_removed_client(fake_redis):
    sessions = ConsoleSessions(fake_redis, lifetime_seconds=60)
    started = sessions.start(CLIENTS.clients[0], at=1000.0)
    rotated = ApiClients.parse("rides:rides-rotated-0123456789abcdef0123456789")
    assert sessions.find(started.id, rotated, at=1001.0) is None
    assert sessions.find(started.id, ApiClients.parse(""), at=1001.0) is None
    sessions.end(started.id)
    assert sessions.find(started.id, CLIENTS, at=1001.0) is None


@pytest.mark.parametrize("sid", ["", "x", "../../etc", "a" * 44, "*"])
def test_an_id_that_no_sign_in_could_have_made_is_not_looked_up(fake_redis, sid):
    assert ConsoleSessions(fake_redis, lifetime_seconds=60).find(sid, CLIENTS, 0.0) is None


def test_the_audit_is_newest_first_counted_and_capped(fake_redis):
    counters = Counters(fake_redis)
    audit = ConsoleAudit(fake_redis, counters)
    audit.record("ops", ConsoleAction.SIGN_IN)
    audit.record("ops", ConsoleAction.DRAIN, "***0001")
    assert [(e.who, e.action, e.subject) for e in audit.recent()] == [
        ("ops", "drain", "***0001"), ("ops", "sign_in", ""),
    ]
    assert counters.snapshot() == {'smsproxy_console_actions_total{action="sign_in"}': 1,
                                   'smsproxy_console_actions_total{action="drain"}': 1}
    assert AUDIT_CAP >= 1000  # the cap is applied by XADD MAXLEN on every record


def test_the_audit_forgets_what_is_older_than_its_retention(fake_redis):
    audit = ConsoleAudit(fake_redis, Counters(fake_redis), retention_seconds=60)
    fake_redis.xadd(Keys().console_audit(), {"who": "old", "action": "x", "subject": ""},
                    id="1000-0")
    audit.record("ops", ConsoleAction.SIGN_OUT)
    assert [e.who for e in audit.recent()] == ["ops"]


@pytest.mark.parametrize("raw, expected", [
    ("0123456789ABCDEF0123456789abcdef", ("0123456789abcdef0123456789abcdef", None)),
    (" +44 7400 123456 ", (None, "447400123456")),
    ("0044 7400 123456", (None, "447400123456")),
])
def test_search_takes_an_id_or_a_number(raw, expected):
    found = parse_search(raw)
    assert (found.conversation_id, found.msisdn) == expected


@pytest.mark.parametrize("raw", ["", "hello", "+٤٤7400123456", "1" * 40, "+1 800 FLOWERS"])
def test_search_refuses_what_is_neither(raw):
    with pytest.raises(SearchError):
        parse_search(raw)


def test_the_trail_masks_people_and_shows_the_proxy_numbers_and_each_part():
    conversation = Conversation(
        id="c" * 32,
        participants=(Participant("447400123456", "447700900001"),
                      Participant("447400654321", "447700900002")),
        status=ConversationStatus.ACTIVE, created_at=0.0, ttl_seconds=60,
    )
    trail = [
        InboundRecord("in-1", "447400123456", 1, 5.0, text="secret"),
        OutboundRecord("out-1", "relay", "447700900002", "447400654321", "submitted", 2, 1, 6.0,
                       part_receipts=("delivered", None), text="secret"),
    ]
    inbound, outbound = trail_rows(conversation, trail, with_text=False)
    assert inbound.sender == "+***3456" and inbound.text is None
    assert (outbound.sender, outbound.recipient) == ("+447700900002", "+***4321")
    assert outbound.part_receipts == ("delivered", None)


def test_part_receipts_follow_vonages_part_order():
    data = {"vonage_ids": '["b","a"]', "receipts": '{"a":"delivered","z":"failed"}'}
    assert _part_receipts(data) == (None, "delivered", "failed")
    assert _part_receipts({}) == ()
    assert _part_receipts({"receipts": "not json"}) == ()


def test_the_overview_groups_counters_and_names_each_failure(fake_redis):
    inventory = PoolInventory(fake_redis)
    inventory.add("447700900001", "GB", monthly_cost="0.90")
    inventory.add("12015550100", "US", monthly_cost="1.10")
    inventory.drain("12015550100")
    pool = pool_by_country(inventory, {"GB": 2, "DE": 1})
    assert [(c.country, c.allocatable, c.target, c.draining) for c in pool] == [
        ("DE", 0, 1, 0), ("GB", 1, 2, 0), ("US", 0, 0, 1),
    ]
    shown = overview({"smsproxy.outbound.sent": 4, "smsproxy.outbound.failed": 2,
                      "smsproxy.webhooks.inbound.accepted": 9}, None, pool)
    assert shown.sends == (("failed", 2), ("sent", 4))
    assert shown.webhooks == (("inbound.accepted", 9),)
    assert dict(shown.failures)["sends failed (permanent error or attempts used up)"] == 2
