"""An inbound message from its route to the sends it is owed, on fakeredis."""

import pytest

from shared.domain import ConversationStatus, InboundSms
from shared.inbound_rules import decide
from tests.doubles import FakeVonage
from tests.shared.conftest import POOL, A, B, World, inbound


def test_message_from_a_reaches_b_from_bs_proxy(world):
    _, conversation = world.start()
    a, b = conversation.participants
    outbound = world.relay(A, a.proxy_number, "m1", "hello B")
    assert (outbound.sender, outbound.recipient, outbound.text) == (b.proxy_number, B, "hello B")
    world.services.sender.send(outbound.id, world.vonage)
    assert world.vonage.sent == [
        {"from": b.proxy_number, "to": B, "text": "hello B", "client_ref": outbound.id}
    ]


def test_redelivered_relay_sends_once(world):
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    for _ in range(3):
        (outbound_id,) = world.relay_ids(A, proxy, "m1", "once")
        world.services.sender.send(outbound_id, world.vonage)
    assert [s["text"] for s in world.vonage.sent] == ["once"]
    world.services.tallies.flush()  # the relay's count is buffered in the process
    assert world.services.counters.snapshot()["smsproxy.inbound.relayed"] == 1


def test_a_relay_recorded_by_this_run_is_handed_on_as_stored_and_a_redelivery_reads_it(world):
    """The send a run records is handed to its sender as `outbound` reads it back (so the
    read can be skipped); a redelivered run, which recorded nothing, hands nothing on."""
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    message = inbound(A, proxy, "m-fresh", "as stored")
    first = world.services.inbound.handle(world.services.reassembler.reassemble(message))
    (outbound_id,) = first.sends
    assert dict(first.fresh) == {outbound_id: world.services.messages.outbound(outbound_id)}
    again = world.services.inbound.handle(world.services.reassembler.reassemble(message))
    assert again.sends == (outbound_id,) and not again.fresh


def test_a_send_handed_on_is_still_claimed_once(world):
    """Handed the recorded send, the sender still claims it: a second run of the same send
    (a redelivered task with the same hand-over) makes no second call."""
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    whole = world.services.reassembler.reassemble(inbound(A, proxy, "m-claim", "only once"))
    carried = world.services.inbound.handle(whole)
    (outbound_id,) = carried.sends
    for _ in range(2):
        world.services.sender.send(outbound_id, world.vonage, carried.fresh[outbound_id])
    assert [s["text"] for s in world.vonage.sent] == ["only once"]


def test_unknown_route_is_not_relayed_and_gets_the_reply(world):
    world.start()
    stranger = "447400999999"
    whole = world.services.reassembler.reassemble(inbound(stranger, "447700900100", "m9", "hi?"))
    assert not world.services.inbound.context(whole).routed
    (outbound,) = world.handle(whole)
    assert outbound.recipient == stranger
    assert outbound.text == "This conversation has ended."
    assert world.services.counters.snapshot()["smsproxy.inbound.unrouted"] == 1


def test_after_close_messages_are_not_relayed(world):
    _, conversation = world.start()
    world.services.conversations.close(conversation.id)
    proxy = conversation.participants[0].proxy_number
    outbound = world.relay(A, proxy, "m2", "still there?")
    assert outbound.recipient == A and outbound.kind.value == "out_of_session"


def test_the_relay_is_recorded_in_the_trail_once(world):
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    for _ in range(2):
        world.relay_ids(A, proxy, "m3", "audit me")
    trail = world.services.messages.trail(conversation.id)
    assert [(e.record, e.id) for e in trail] == [("in", "m3"), ("out", "relay-m3")]


@pytest.mark.parametrize("prefix", ["", "[Ride] "])
def test_the_prefix_setting_reaches_the_relayed_text(make_services, prefix):
    from shared.inbound_rules import decide

    services = make_services(SMSPROXY_RELAY_PREFIX=prefix)
    services.inventory.add("447700900100", "GB")
    from tests.doubles import FakeVonage
    from tests.shared.conftest import World

    world = World(services, FakeVonage())
    _, conversation = world.start()
    whole = services.reassembler.reassemble(
        inbound(A, conversation.participants[0].proxy_number, "m4", "hi"))
    assert decide(services.inbound.context(whole)).relay == prefix + "hi"
    assert conversation.status is ConversationStatus.ACTIVE


def test_a_binary_message_is_recorded_and_counted_not_relayed(world):
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    binary = InboundSms.from_params({"msisdn": A, "to": proxy, "messageId": "b1",
                                     "type": "binary", "data": "0605040b8423f0", "udh": "06"})
    whole = world.services.reassembler.reassemble(binary)
    assert world.handle(whole) == []
    trail = world.services.messages.trail(conversation.id)
    assert [(e.record, e.id) for e in trail] == [("in", "b1")]
    assert world.services.counters.snapshot()["smsproxy.inbound.binary"] == 1


def test_masked_text_is_relayed_and_the_trail_counts_what_was_masked(world):
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    for _ in range(2):  # a redelivered task counts nothing twice
        (sent_id,) = world.relay_ids(A, proxy, "m7", "ring 07911 123456 or a@example.com")
    outbound = world.services.messages.outbound(sent_id)
    assert outbound is not None and outbound.text == "ring [hidden] or [hidden]"
    trail = world.services.messages.trail(conversation.id)
    assert [(e.id, getattr(e, "masked", None)) for e in trail if e.record == "in"] == [("m7", 2)]
    assert world.services.counters.snapshot()["smsproxy.inbound.masked"] == 2


def test_a_blocked_participant_is_not_relayed_and_counted(world):
    _, conversation = world.start()
    world.services.blocked.block(A, 1.0)
    assert world.relay_ids(A, conversation.participants[0].proxy_number, "m1", "hi") == []
    assert world.relay_ids(B, conversation.participants[1].proxy_number, "m2", "hi") == []
    assert world.services.counters.snapshot()["smsproxy.inbound.blocked"] == 2
    world.services.blocked.unblock(A)
    assert len(world.relay_ids(B, conversation.participants[1].proxy_number, "m3", "hi")) == 1


def test_a_text_from_one_of_our_own_numbers_gets_no_reply_and_is_counted(world):
    world.start()
    ours = "447700900101"
    whole = world.services.reassembler.reassemble(inbound(ours, "447700900100", "m9", "hi?"))
    assert world.handle(whole) == []
    assert world.services.counters.snapshot()["smsproxy.inbound.own_number"] == 1
    assert "smsproxy.inbound.unrouted" not in world.services.counters.snapshot()


def test_one_out_of_session_reply_per_sender_per_interval(world):
    world.start()
    stranger = "447400999999"
    first = world.services.reassembler.reassemble(inbound(stranger, "447700900100", "m1", "?"))
    (reply,) = world.handle(first)
    # the same message again (a redelivered task) is owed the same reply
    assert [o.id for o in world.handle(first)] == [reply.id]
    for message_id in ("m2", "m3"):
        again = world.services.reassembler.reassemble(
            inbound(stranger, "447700900101", message_id, "??"))
        assert world.handle(again) == []
    assert world.services.counters.snapshot()["smsproxy.out_of_session.repeat"] == 2
    # another sender has an allowance of its own
    other = world.services.reassembler.reassemble(inbound("447400999998", "447700900100",
                                                          "m4", "?"))
    assert len(world.handle(other)) == 1


def test_two_texts_racing_for_one_allowance_get_one_reply(world):
    world.start()
    stranger = "447400999999"
    contexts = [
        world.services.inbound.context(world.services.reassembler.reassemble(
            inbound(stranger, "447700900100", message_id, "?")))
        for message_id in ("m1", "m2")
    ]
    # both were gathered before either was carried out: each decided to reply
    decisions = [decide(c) for c in contexts]
    assert all(d.replies for d in decisions)
    carry_out = world.services.inbound.carry_out
    owed = [carry_out(c, d).sends for c, d in zip(contexts, decisions, strict=True)]
    assert [len(s) for s in owed] == [1, 0]
    assert world.services.counters.snapshot()["smsproxy.out_of_session.repeat"] == 1


def test_a_premium_rate_sender_gets_no_reply_and_it_is_counted(world):
    world.start()
    whole = world.services.reassembler.reassemble(inbound("449098765432", "447700900100",
                                                          "m1", "?"))
    assert world.handle(whole) == []
    assert world.services.counters.snapshot()["smsproxy.out_of_session.costly_number"] == 1


def capped_world(make_services, **env):
    services = make_services(SMSPROXY_SEND_RATE_PER_SECOND="0", **env)
    for number in POOL:
        services.inventory.add(number, "GB")
    return World(services, FakeVonage())


def test_a_capped_conversation_relays_nothing_more_tells_the_sender_once_and_records_it(
    make_services,
):
    world = capped_world(make_services, SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE="1",
                         SMSPROXY_CONVERSATION_RELAY_BURST="2")
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    owed = [world.handle(world.services.reassembler.reassemble(inbound(A, proxy, f"m{i}", "hi")))
            for i in range(5)]
    kinds = [[o.kind for o in sends] for sends in owed]
    assert kinds == [["relay"], ["relay"], ["cap_notice"], [], []]
    notice = owed[2][0]
    assert notice.recipient == A and notice.sender == proxy and "a few minutes" in notice.text
    counters = world.services.counters.snapshot()
    assert counters["smsproxy.inbound.rate_capped"] == 3
    trail = world.services.messages.trail(conversation.id)
    not_relayed = {e.id: getattr(e, "not_relayed", None) for e in trail if e.record == "in"}
    assert not_relayed == {"m0": None, "m1": None, "m2": "rate_capped", "m3": "rate_capped",
                           "m4": "rate_capped"}


def test_at_the_daily_send_limit_the_alert_is_raised_once_and_replies_stop(make_services,
                                                                          caplog):
    world = capped_world(make_services, SMSPROXY_DAILY_SEND_LIMIT="2",
                         SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    _, conversation = world.start()
    proxy = conversation.participants[0].proxy_number
    for message_id in ("m1", "m2"):
        (relay,) = world.handle(world.services.reassembler.reassemble(
            inbound(A, proxy, message_id, "hi")))
        world.services.sender.send(relay.id, world.vonage)
    counters = world.services.counters.snapshot()
    assert counters["smsproxy.sends.daily_limit_reached"] == 1
    assert "daily send limit of 2 reached" in caplog.text
    # relays, the product, go on; the out-of-session reply does not
    (relay,) = world.handle(world.services.reassembler.reassemble(inbound(A, proxy, "m3", "x")))
    world.services.sender.send(relay.id, world.vonage)
    assert world.handle(world.services.reassembler.reassemble(
        inbound("447400999999", proxy, "m4", "?"))) == []
    counters = world.services.counters.snapshot()
    assert counters["smsproxy.sends.daily_limit_reached"] == 1
    assert counters["smsproxy.sends.non_essential_stopped"] == 1
    assert len(world.vonage.sent) == 3
