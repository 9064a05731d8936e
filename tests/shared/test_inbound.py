"""An inbound message from its route to the sends it is owed, on fakeredis."""

import pytest

from shared.domain import ConversationStatus, InboundSms
from shared.inbound_rules import decide
from tests.shared.conftest import A, B, inbound


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
    assert world.services.counters.snapshot()["smsproxy.inbound.relayed"] == 1


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
    owed = [world.services.inbound.carry_out(c, d).sends for c, d in zip(contexts, decisions)]
    assert [len(s) for s in owed] == [1, 0]
    assert world.services.counters.snapshot()["smsproxy.out_of_session.repeat"] == 1


def test_a_premium_rate_sender_gets_no_reply_and_it_is_counted(world):
    world.start()
    whole = world.services.reassembler.reassemble(inbound("449098765432", "447700900100",
                                                          "m1", "?"))
    assert world.handle(whole) == []
    assert world.services.counters.snapshot()["smsproxy.out_of_session.costly_number"] == 1
