"""An inbound message from its route to the sends it is owed, on fakeredis."""

import pytest

from shared.domain import ConversationStatus, InboundSms
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
