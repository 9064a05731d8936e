"""The console's logic: sessions, the audit, search parsing, what the pages show of numbers."""

from __future__ import annotations

import json
import math

import pytest

from shared.blocked_numbers import BlockedNumber
from shared.clients import ApiClients
from shared.console import (
    AUDIT_CAP,
    BlockFormError,
    ConsoleAction,
    ConsoleAudit,
    ConsoleSession,
    ConsoleSessions,
    Handles,
    Readings,
    SearchError,
    blocked_rows,
    broker_is_redis,
    histogram_buckets,
    opt_out_pairs,
    overview,
    parse_block_form,
    parse_search,
    participants,
    pool_by_country,
    quantile,
    readings,
    trail_rows,
)
from shared.domain import ERASED, Conversation, ConversationStatus, Participant
from shared.gauges import Gauges, Heartbeats
from shared.keys import Keys
from shared.messages import InboundRecord, OutboundRecord, _part_receipts
from shared.metrics import RELAY_LATENCY, WEBHOOK_DURATION, Counters
from shared.opt_outs import OptOut
from shared.pool_inventory import PoolInventory

TOKEN = "rides-0123456789abcdef0123456789abcdef"
NO_READINGS = Readings(queues=None, outbox_jobs=0, sends_open=0, sends_in_doubt=0,
                       workers_alive=0)
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
    # a current id is case-sensitive base64url: taken exactly as typed
    (" q3Zb-8c1E9d7a4_6 ", ("q3Zb-8c1E9d7a4_6", None)),
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
                      "smsproxy.webhooks.inbound.accepted": 9}, NO_READINGS, pool)
    assert shown.sends == (("failed", 2), ("sent", 4))
    assert shown.webhooks == (("inbound.accepted", 9),)
    assert dict(shown.failures)["sends failed (permanent error or attempts used up)"] == 2


# -- gauges and latency -------------------------------------------------------------------------


def _message(published: float) -> str:
    return json.dumps({"body": "", "properties": {"smsproxy_published_at": published}})


def test_the_overview_reads_the_same_gauges_as_metrics(fake_redis):
    now = 10_000.0
    fake_redis.lpush("inbound", _message(now - 40), _message(now - 5))
    Heartbeats(fake_redis).beat("worker1@a", now - 1)
    Heartbeats(fake_redis).beat("worker2@a", now - 2)
    gauges = Gauges(fake_redis, fake_redis, PoolInventory(fake_redis), {})
    found = readings(gauges.operational(now))
    assert found.workers_alive == 2
    assert found.queues is not None
    by_name = {q.name: q for q in found.queues}
    assert set(by_name) == {"inbound", "outbound", "conversations", "receipts", "pool"}
    assert by_name["inbound"].depth == 2
    assert by_name["inbound"].oldest_age_seconds == pytest.approx(40)
    assert by_name["pool"].depth == 0
    assert (found.outbox_jobs, found.sends_open, found.sends_in_doubt) == (0, 0, 0)
    assert readings(gauges.operational(now), queues_read=False).queues is None


@pytest.mark.parametrize("url, redis_lists", [
    ("redis://127.0.0.1:6379/0", True), ("rediss://broker:6380/1", True),
    ("amqp://guest@rabbit//", False), ("sentinel://a:26379", False),
])
def test_the_queues_are_read_when_the_broker_is_a_redis(url, redis_lists):
    assert broker_is_redis(url) is redis_lists


@pytest.mark.parametrize("q, buckets, expected", [
    (0.5, {}, None),
    (0.5, {0.1: 0, 0.5: 0}, None),
    # all ten in (0.1, 0.25]: the median halfway through it
    (0.5, {0.1: 0, 0.25: 10, math.inf: 0}, 0.175),
    # the first bucket starts at zero
    (0.5, {0.1: 4}, 0.05),
    # 95 in the first bucket, 5 in the second: p95 is the top of the first
    (0.95, {0.1: 95, 0.25: 5}, 0.1),
    (0.5, {0.1: 1, 0.25: 1, 0.5: 2}, 0.25),
    # beyond the last finite bound: that bound, as Prometheus answers
    (0.95, {0.1: 1, 0.25: 1, math.inf: 8}, 0.25),
    (0.5, {math.inf: 3}, None),
    (1.0, {0.1: 1, 1.0: 1}, 1.0),
    (0.0, {0.1: 0, 1.0: 2}, 0.1),
])
def test_quantiles_are_interpolated_within_their_bucket(q, buckets, expected):
    found = quantile(q, buckets)
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_a_quantile_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile(1.5, {0.1: 1})


def test_latencies_come_from_the_stored_buckets(fake_redis):
    counters = Counters(fake_redis)
    for seconds in (0.2, 0.2, 0.3, 0.4, 4.0):
        counters.observe(RELAY_LATENCY, seconds)
    for seconds in (0.002, 0.003):
        counters.observe(WEBHOOK_DURATION, seconds, {"kind": "inbound", "code": "200"})
    counters.observe(WEBHOOK_DURATION, 0.004, {"kind": "inbound", "code": "503"})
    counters.observe(WEBHOOK_DURATION, 2.0, {"kind": "receipt", "code": "200"})
    counts = counters.snapshot()
    relay_buckets = histogram_buckets(counts, RELAY_LATENCY)
    assert {b: n for b, n in relay_buckets.items() if n} == {0.25: 2, 0.5: 2, 5.0: 1}
    assert relay_buckets[2.5] == 0 and relay_buckets[math.inf] == 0  # every bucket is there
    inbound_buckets = histogram_buckets(counts, WEBHOOK_DURATION, kind="inbound")
    assert {b: n for b, n in inbound_buckets.items() if n} == {0.0025: 1, 0.005: 2}
    relay, inbound, receipt = overview(counts, NO_READINGS, ()).latencies
    assert relay.count == 5 and relay.p50 == pytest.approx(0.3125)
    assert relay.p95 == pytest.approx(2.5 + 2.5 * 0.75)
    assert inbound.count == 3 and inbound.p50 == pytest.approx(0.0025 + 0.0025 * 0.25)
    assert receipt.count == 1 and receipt.p95 == pytest.approx(1.0 + 1.5 * 0.95)


# -- opt-outs and the trail's fields ------------------------------------------------------------


def test_each_participant_shows_whether_and_since_when_they_opted_out():
    conversation = Conversation(
        id="c" * 32,
        participants=(Participant("447400123456", "447700900001"),
                      Participant("447400654321", "447700900002"),
                      Participant(ERASED, "447700900003"), Participant("447400111111", None)),
        status=ConversationStatus.ACTIVE, created_at=0.0, ttl_seconds=60,
    )
    assert opt_out_pairs(conversation) == [("447400123456", "447700900001"),
                                           ("447400654321", "447700900002")]
    rows = participants(conversation, [None, OptOut("in-stop", 1234.5)])
    assert [(r.number, r.opted_out, r.opted_out_at) for r in rows] == [
        ("+***3456", False, None), ("+***4321", True, 1234.5), ("erased", False, None),
        ("+***1111", False, None),
    ]


def test_the_trail_carries_opt_out_state_why_not_relayed_and_how_much_was_masked():
    conversation = Conversation(
        id="c" * 32,
        participants=(Participant("447400123456", "447700900001"),
                      Participant("447400654321", "447700900002")),
        status=ConversationStatus.ACTIVE, created_at=0.0, ttl_seconds=60,
    )
    trail = [
        InboundRecord("in-1", "447400123456", 1, 5.0, masked=2),
        InboundRecord("in-2", "447400654321", 1, 6.0, participant_state="opted_out",
                      not_relayed="keyword"),
        InboundRecord("in-3", "447400123456", 1, 7.0, not_relayed="recipient_opted_out"),
    ]
    masked_row, stop, held = trail_rows(conversation, trail, with_text=False)
    assert (masked_row.masked, masked_row.not_relayed) == (2, None)
    assert (stop.participant_state, stop.not_relayed) == ("opted_out", "keyword")
    assert stop.not_relayed_means is not None and "STOP" in stop.not_relayed_means
    assert held.not_relayed == "recipient_opted_out"
    assert held.not_relayed_means == "the other side opted out of their number"


# -- blocked numbers ----------------------------------------------------------------------------


def test_the_block_form_takes_any_international_form_and_an_optional_reason():
    assert parse_block_form(" +44 7400 123456 ", "  ") == parse_block_form("00447400123456", "")
    form = parse_block_form("+447400123456", " spam ")
    assert (form.msisdn, form.reason) == ("447400123456", "spam")


@pytest.mark.parametrize("number, reason, says", [
    ("", "", "international form"),
    ("hello", "", "not a phone number"),
    ("+447400123456", "x" * 201, "1 to 200 characters"),
    ("+447400123456", "two\nlines", "control characters"),
])
def test_the_block_form_refuses_what_the_api_would(number, reason, says):
    with pytest.raises(BlockFormError, match=says):
        parse_block_form(number, reason)


def _session(sid: str = "s" * 43) -> ConsoleSession:
    return ConsoleSession(sid, "ops", 1000.0, 1060.0)


def test_handles_resolve_for_the_sign_in_that_was_shown_them_only(fake_redis):
    handles = Handles(fake_redis, "console-secret-0123456789abcdef0123456789")
    mine, theirs = _session(), _session("t" * 43)
    given = handles.remember(mine, ["447400123456", "447400654321"], now=1000.0)
    assert handles.remember(mine, ["447400123456"], now=1001.0)["447400123456"] == (
        given["447400123456"])  # stable across reloads
    assert all("7400" not in h for h in given.values())
    assert handles.resolve(mine.id, given["447400654321"]) == "447400654321"
    assert handles.resolve(theirs.id, given["447400654321"]) is None
    assert handles.handle(theirs.id, "447400654321") != given["447400654321"]
    assert handles.resolve(mine.id, "447400654321") is None  # a number is not a handle
    # expires with the sign-in: what was left of it at the last page shown
    assert fake_redis.ttl(Keys().console_handles(mine.id)) == 59
    handles.forget(mine.id)
    assert handles.resolve(mine.id, given["447400123456"]) is None


def test_blocked_rows_are_masked_with_what_tells_them_apart():
    entries = [BlockedNumber("447400123456", 100.0, "spam"), BlockedNumber("12015550123", 200.0)]
    rows = blocked_rows(entries, {"447400123456": "h1", "12015550123": "h2"})
    assert [(r.handle, r.number, r.country, r.reason, r.blocked_at) for r in rows] == [
        ("h1", "+***3456", "GB", "spam", 100.0), ("h2", "+***0123", "US", None, 200.0),
    ]
