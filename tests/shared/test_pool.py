"""Pool maintenance rules against an in-memory Vonage port and fakeredis."""

import pytest

from shared.domain import Conversation, ConversationStatus, Participant
from shared.messages import MessageLog
from shared.vonage_gateway import AvailableNumber, OwnedNumber, VonageFailure
from shared.wiring import Services
from tests.doubles import FakeVonage

URL = "http://127.0.0.1:9/webhooks/inbound-sms"


def gb(n):
    return AvailableNumber(f"4477009001{n:02d}", "GB", "1.25")


@pytest.fixture
def keeper_for(fake_redis, make_settings):
    def build(**env):
        settings = make_settings(**{"SMSPROXY_POOL_TARGETS": "GB=3", **env})
        svc = Services.from_settings(settings, fake_redis)
        return svc.pool_keeper, svc, svc.counters

    return build


def test_buys_to_target_and_configures_inbound_url(keeper_for):
    keeper, svc, counters = keeper_for()
    vonage = FakeVonage(available=[gb(i) for i in range(6)])
    report = keeper.maintain(vonage)
    assert len(report.bought) == 3 and svc.inventory.size("GB") == 3
    assert all(n.inbound_url == URL for n in vonage.owned)
    assert {n.monthly_cost for n in svc.inventory.numbers("GB")} == {"1.25"}
    assert keeper.maintain(vonage).bought == []  # the next run buys nothing
    assert counters.snapshot()["smsproxy.pool.bought"] == 3


def test_a_number_gone_between_search_and_buy_is_skipped(keeper_for):
    keeper, svc, _ = keeper_for()
    vonage = FakeVonage(available=[gb(i) for i in range(5)], gone={gb(0).msisdn, gb(1).msisdn})
    assert keeper.maintain(vonage).bought == [gb(2).msisdn, gb(3).msisdn, gb(4).msisdn]


def test_refused_credentials_stop_the_run_and_alert(keeper_for):
    keeper, svc, counters = keeper_for()
    vonage = FakeVonage(numbers_failure=VonageFailure("http401", "HTTP 401", transient=False))
    with pytest.raises(VonageFailure):
        keeper.maintain(vonage)
    assert svc.inventory.numbers() == []
    assert counters.snapshot()["smsproxy.pool.auth_failed"] == 1


def test_budget_and_maximum_cap_buying(keeper_for):
    keeper, svc, counters = keeper_for(SMSPROXY_POOL_MONTHLY_BUDGET="2.5")
    keeper.maintain(FakeVonage(available=[gb(i) for i in range(6)]))
    assert svc.inventory.size("GB") == 2
    assert counters.snapshot()["smsproxy.pool.budget_reached"] >= 1
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=5", SMSPROXY_POOL_MAXIMUMS="GB=1")
    svc.inventory.forget(gb(0).msisdn), svc.inventory.forget(gb(1).msisdn)
    keeper.maintain(FakeVonage(available=[gb(i) for i in range(6, 12)]))
    assert svc.inventory.size("GB") == 1


def test_adopts_only_its_own_numbers_unless_allowed(keeper_for):
    mine = OwnedNumber("447700900150", "GB", URL)
    foreign = OwnedNumber("447700900151", "GB", "https://other.example/sms")
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=0")
    report = keeper.maintain(FakeVonage(owned=[mine, foreign]))
    assert report.adopted == [mine.msisdn]
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=0", SMSPROXY_POOL_ADOPT="true")
    vonage = FakeVonage(owned=[mine, foreign])
    report = keeper.maintain(vonage)
    assert report.adopted == [foreign.msisdn]
    assert report.repaired == [foreign.msisdn]  # its inbound URL now points at us
    assert all(n.inbound_url == URL for n in vonage.owned)


def _live(svc, conversation_id, a, b):
    svc.conversation_store.add(Conversation(conversation_id, (Participant(a, country="GB"),
                                             Participant(b, country="GB")),
                           ConversationStatus.PENDING, 1.0, 3600))
    pa, pb = svc.routes.allocate(conversation_id, ((a, ("GB",)), (b, ("GB",))))
    return svc.conversation_store.transition(conversation_id, lambda c: c.with_status(
        ConversationStatus.ACTIVE, expires_at=2e9, participants=(
            Participant(a, pa, "GB"), Participant(b, pb, "GB"))))


def test_lost_number_fails_over_live_routes_and_tells_the_people(keeper_for, fake_redis):
    keeper, svc, _ = keeper_for()
    vonage = FakeVonage(available=[gb(i) for i in range(3)])
    keeper.maintain(vonage)
    conversation = _live(svc, "c1", "447400100001", "447400100002")
    lost = conversation.participants[0].proxy_number
    vonage.owned = [n for n in vonage.owned if n.msisdn != lost]  # Vonage took it back
    vonage.available = [gb(10)]
    report = keeper.maintain(vonage)
    assert report.lost == [lost] and report.bought == [gb(10).msisdn]
    moved = svc.conversation_store.get("c1").participants[0]
    assert moved.proxy_number not in {lost, None}
    assert svc.routes.find("447400100001", moved.proxy_number) == "c1"
    assert svc.routes.find("447400100001", lost) is None
    lost_by = [p for p in conversation.participants if p.proxy_number == lost]
    assert len(report.sends) == len(lost_by)  # one SMS per person who lost their number
    message = MessageLog(fake_redis).outbound(report.sends[0])
    assert message.sender == moved.proxy_number and message.recipient == "447400100001"
    assert f"+{moved.proxy_number}" in message.text
    assert lost not in [n.msisdn for n in svc.inventory.numbers()]


def test_lost_number_with_no_replacement_fails_the_conversation(keeper_for):
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=1")
    vonage = FakeVonage(available=[gb(0)])
    keeper.maintain(vonage)
    _live(svc, "c1", "447400100001", "447400100002")
    vonage.owned = []
    keeper.maintain(vonage)
    assert svc.conversation_store.get("c1").status is ConversationStatus.FAILED
    assert svc.conversation_store.get("c1").failure_reason == "number_lost"


def test_release_drains_surplus_and_never_cancels_a_number_in_use(keeper_for):
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=3")
    vonage = FakeVonage(available=[gb(i) for i in range(3)])
    keeper.maintain(vonage)
    conversation = _live(svc, "c1", "447400100001", "447400100002")
    busy = {p.proxy_number for p in conversation.participants}
    keeper, svc, _ = keeper_for(SMSPROXY_POOL_TARGETS="GB=0", SMSPROXY_POOL_RELEASE="true")
    report = keeper.maintain(vonage)
    assert len(report.drained) == 3
    assert not set(report.cancelled) & busy
    assert all(n.state == "draining" for n in svc.inventory.numbers() if n.msisdn in busy)
    svc.conversation_store.finish("c1", ConversationStatus.CLOSED)
    report = keeper.maintain(vonage)
    assert set(report.cancelled) == busy
    assert svc.inventory.numbers() == [] and vonage.owned == []


def test_partial_answer_stops_the_run_without_touching_the_pool(keeper_for):
    keeper, svc, counters = keeper_for()
    vonage = FakeVonage(available=[gb(i) for i in range(3)])
    keeper.maintain(vonage)
    vonage.numbers_failure = VonageFailure("numbers", "owned number without msisdn or country",
                                           transient=True)
    with pytest.raises(VonageFailure):
        keeper.maintain(vonage)
    assert svc.inventory.size("GB") == 3
    assert counters.snapshot()["smsproxy.pool.maintenance_failed"] == 1


def test_one_keeper_at_a_time(keeper_for, fake_redis):
    keeper, svc, _ = keeper_for()
    lock = fake_redis.lock("smsproxy:lock:pool", timeout=30)
    assert lock.acquire(blocking=False)
    assert keeper.maintain(FakeVonage(available=[gb(0)])).ran is False
    lock.release()


def test_an_operator_drains_only_an_active_number_of_the_pool(fake_redis):
    from shared.wiring import Services
    from tests.conftest import build_settings

    svc = Services.from_settings(build_settings(), fake_redis)
    svc.inventory.add("447700900001", "GB")
    assert svc.pool_keeper.drain("447700900001") is True
    assert svc.inventory.size("GB") == 0
    assert svc.pool_keeper.drain("447700900001") is False  # draining already
    assert svc.pool_keeper.drain("447700900999") is False  # not ours: nothing is made up
    assert [n.msisdn for n in svc.inventory.numbers()] == ["447700900001"]
    assert svc.counters.snapshot()["smsproxy.pool.drained"] == 1
