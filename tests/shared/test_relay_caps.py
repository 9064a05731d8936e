"""The per-conversation caps and the daily send count, on fakeredis (our own Lua)."""

import pytest

from shared.relay_caps import Cap, CapVerdict, DailySends, RelayCaps


def caps(fake_redis, make_settings, **env):
    return RelayCaps(fake_redis, make_settings(**env))


def test_a_burst_passes_then_the_rest_is_capped_and_the_sender_told_once(fake_redis,
                                                                         make_settings):
    limits = caps(fake_redis, make_settings, SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE="1",
                  SMSPROXY_CONVERSATION_RELAY_BURST="3")
    verdicts = [limits.verdict("c1", f"m{i}", "447400100001") for i in range(6)]
    assert verdicts[:3] == [CapVerdict()] * 3
    assert verdicts[3] == CapVerdict(Cap.RATE, notify=True)
    assert verdicts[4:] == [CapVerdict(Cap.RATE, notify=False)] * 2
    # another conversation has a bucket of its own
    assert limits.verdict("c2", "n1", "447400100001") == CapVerdict()


def test_each_sender_of_a_capped_conversation_is_told_once(fake_redis, make_settings):
    limits = caps(fake_redis, make_settings, SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE="1",
                  SMSPROXY_CONVERSATION_RELAY_BURST="1")
    limits.verdict("c1", "m0", "A")
    assert limits.verdict("c1", "m1", "A").notify
    assert limits.verdict("c1", "m2", "B").notify
    assert not limits.verdict("c1", "m3", "A").notify


def test_a_message_keeps_its_verdict_when_judged_again(fake_redis, make_settings):
    limits = caps(fake_redis, make_settings, SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE="1",
                  SMSPROXY_CONVERSATION_RELAY_BURST="1")
    assert limits.verdict("c1", "m0", "A") == CapVerdict()
    capped = limits.verdict("c1", "m1", "A")
    assert capped == CapVerdict(Cap.RATE, notify=True)
    # a redelivered task: same verdicts, and no second token taken
    assert limits.verdict("c1", "m0", "A") == CapVerdict()
    assert limits.verdict("c1", "m1", "A") == capped


def test_the_daily_cap_counts_relays_only(fake_redis, make_settings):
    limits = caps(fake_redis, make_settings, SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE="0",
                  SMSPROXY_CONVERSATION_DAILY_RELAYS="2")
    assert [limits.verdict("c1", f"m{i}", "A").over for i in range(4)] == [
        None, None, Cap.DAILY, Cap.DAILY]
    assert fake_redis.ttl("smsproxy:conv:c1:relays") > 0  # the window ends


@pytest.mark.parametrize("env", [
    {"SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
     "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0"},
])
def test_no_caps_when_both_are_off(fake_redis, make_settings, env):
    limits = caps(fake_redis, make_settings, **env)
    assert not limits.enabled
    assert all(limits.verdict("c1", f"m{i}", "A") == CapVerdict() for i in range(50))


def test_daily_sends_count_only_with_a_limit(fake_redis, make_settings):
    off = DailySends(fake_redis, make_settings())
    assert off.count() is None and not off.reached()
    on = DailySends(fake_redis, make_settings(SMSPROXY_DAILY_SEND_LIMIT="2"))
    assert [on.count(), on.reached(), on.count(), on.reached()] == [1, False, 2, True]
    assert DailySends.today(0.0) == "19700101"
