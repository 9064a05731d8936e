"""Opt-out keywords carried out on fakeredis: the state per person and number, the one
confirmation, the counterpart told once, relays withheld, allocation avoiding the number."""

from __future__ import annotations

from dataclasses import replace

from shared.domain import Conversation, ConversationStatus, MessageKind, Participant
from shared.inbound_rules import Event
from shared.keys import Keys
from shared.opt_outs import Change, OptOuts, ParticipantState
from shared.public_json import conversation_view
from tests.shared.conftest import POOL, A, B, World, inbound

C = "447400100003"


def _handle(world: World, sender: str, to: str, message_id: str, text: str):
    whole = world.services.reassembler.reassemble(inbound(sender, to, message_id, text))
    carried = world.services.inbound.handle(whole)
    world.services.reassembler.release(whole)
    return carried


def _owed(world: World, carried):
    return [world.services.messages.outbound(i) for i in carried.sends]


def test_the_store_changes_once_per_message_and_reports_a_retry(fake_redis):
    store = OptOuts(fake_redis)
    out, in_ = ParticipantState.OPTED_OUT, ParticipantState.OPTED_IN
    assert store.get(A, POOL[0]) is None
    assert store.change(A, POOL[0], out, "s1") is Change.MADE
    assert store.change(A, POOL[0], out, "s1") is Change.MADE_BEFORE  # the task ran again
    assert store.change(A, POOL[0], out, "s2") is Change.NONE  # a second STOP
    opt_out = store.get(A, POOL[0])
    assert opt_out is not None and opt_out.message_id == "s1"
    assert fake_redis.ttl(Keys().opt_out(A, POOL[0])) == -1  # until they opt back in
    assert store.opted_out([(A, POOL[0]), (A, POOL[1]), (B, POOL[0]), (A, None)]) == (
        True, False, False, False)
    assert store.change(A, POOL[0], in_, "g1") is Change.MADE
    assert store.get(A, POOL[0]) is None
    assert fake_redis.ttl(Keys().opt_out(A, POOL[0])) > 0  # the opt-in's record ages out
    assert store.change(B, POOL[0], in_, "g2") is Change.NONE  # never opted out


def test_stop_is_confirmed_once_the_other_side_told_once_and_nothing_relayed(world):
    _, conversation = world.start()
    a, b = conversation.participants
    for _ in range(2):  # a redelivered task owes the same sends and counts nothing twice
        carried = _handle(world, A, a.proxy_number, "stop-1", "Stop")
    notice, confirmation = (world.services.messages.outbound(i) for i in carried.sends)
    assert confirmation is not None and notice is not None
    assert (confirmation.kind, confirmation.sender, confirmation.recipient) == (
        MessageKind.OPT_OUT, a.proxy_number, A)
    assert (notice.kind, notice.sender, notice.recipient) == (
        MessageKind.OPTED_OUT_NOTICE, b.proxy_number, B)
    assert notice.text.startswith("Rider has opted out")
    assert carried.events == (Event.PARTICIPANT_OPTED_OUT,)
    assert (carried.conversation_id, carried.sender_index) == (conversation.id, 0)
    counters = world.services.counters.snapshot()
    assert counters["smsproxy.participants.opted_out"] == 1
    assert counters["smsproxy.inbound.keyword"] == 2
    trail = world.services.messages.trail(conversation.id)
    (entry,) = [e for e in trail if e.record == "in"]
    assert (entry.participant_state, entry.not_relayed) == ("opted_out", "keyword")
    assert world.services.opt_outs.of(conversation) == (True, False)

    # a second STOP changes nothing and is confirmed no more
    again = _handle(world, A, a.proxy_number, "stop-2", "STOP")
    assert again.sends == () and again.events == ()


def test_the_other_sides_texts_are_withheld_and_it_is_told_only_once(world):
    _, conversation = world.start()
    a, b = conversation.participants
    _handle(world, A, a.proxy_number, "stop-1", "STOP")
    for n in range(3):
        carried = _handle(world, B, b.proxy_number, f"b{n}", "hello? call me")
        assert all(o is None or o.kind is MessageKind.OPTED_OUT_NOTICE for o in _owed(world,
                                                                                      carried))
    kinds = [e.kind for e in world.services.messages.trail(conversation.id) if e.record == "out"]
    assert kinds.count("opted_out_notice") == 1 and "relay" not in kinds
    not_relayed = [e.not_relayed for e in world.services.messages.trail(conversation.id)
                   if e.record == "in" and e.sender == B]
    assert not_relayed == ["recipient_opted_out"] * 3
    # the opted-out person may still write; the other side receives it
    (relay,) = _owed(world, _handle(world, A, a.proxy_number, "a1", "sorry, wrong button"))
    assert relay is not None and relay.recipient == B


def test_start_opts_back_in_with_a_confirmation_and_relays_resume(world):
    _, conversation = world.start()
    a, b = conversation.participants
    _handle(world, A, a.proxy_number, "stop-1", "STOP")
    carried = _handle(world, A, a.proxy_number, "start-1", "start")
    (confirmation,) = _owed(world, carried)
    assert confirmation is not None and confirmation.kind is MessageKind.OPT_IN
    assert carried.events == (Event.PARTICIPANT_OPTED_IN,)
    assert world.services.opt_outs.of(conversation) == (False, False)
    (relay,) = _owed(world, _handle(world, B, b.proxy_number, "b1", "welcome back"))
    assert relay is not None and relay.kind is MessageKind.RELAY and relay.recipient == A


def test_stop_without_a_live_route_opts_out_and_start_undoes_it(world):
    _, conversation = world.start()
    a = conversation.participants[0]
    world.services.conversations.close(conversation.id)
    (confirmation,) = _owed(world, _handle(world, A, a.proxy_number, "stop-1", "STOP"))
    assert confirmation is not None and confirmation.kind is MessageKind.OPT_OUT
    assert confirmation.conversation_id is None
    assert world.services.opt_outs.get(A, a.proxy_number) is not None
    (back,) = _owed(world, _handle(world, A, a.proxy_number, "start-1", "UNSTOP"))
    assert back is not None and back.kind is MessageKind.OPT_IN


def test_help_gets_the_help_reply(world):
    _, conversation = world.start()
    a = conversation.participants[0]
    (reply,) = _owed(world, _handle(world, A, a.proxy_number, "h1", "HELP"))
    assert reply is not None and reply.kind is MessageKind.HELP and reply.recipient == A
    assert reply.text == world.services.settings.help_reply


def test_allocation_gives_an_opted_out_person_another_number(world):
    _, conversation = world.start()
    a = conversation.participants[0]
    _handle(world, A, a.proxy_number, "stop-1", "STOP")
    world.services.conversations.close(conversation.id)
    other = Conversation(id="d" * 32, participants=(Participant(A), Participant(C)),
                         status=ConversationStatus.PENDING, created_at=2.0, ttl_seconds=3600)
    world.services.conversation_store.add(other)
    world.services.conversations.establish(other.id, world.vonage)
    found = world.services.conversation_store.get(other.id)
    assert found is not None and found.status is ConversationStatus.ACTIVE
    assert found.participants[0].proxy_number != a.proxy_number
    # a third conversation for A would need a number they have not stopped: none is left
    third = replace(other, id="e" * 32, participants=(Participant(A), Participant("447400100004")))
    world.services.conversation_store.add(third)
    world.services.conversations.establish(third.id, world.vonage)
    failed = world.services.conversation_store.get(third.id)
    assert failed is not None and failed.failure_reason == "pool_exhausted"


def test_the_conversation_json_shows_each_participants_state(world):
    _, conversation = world.start()
    a = conversation.participants[0]
    _handle(world, A, a.proxy_number, "stop-1", "STOP")
    view = conversation_view(conversation, world.services.opt_outs.of(conversation))
    assert [p["opted_out"] for p in view["participants"]] == [True, False]


def test_nobody_is_sent_a_notice_from_a_number_they_opted_out_of(world):
    _, conversation = world.start()
    a, b = conversation.participants
    _handle(world, B, b.proxy_number, "stop-b", "STOP")
    # A stops too: B, opted out, is not told
    carried = _handle(world, A, a.proxy_number, "stop-a", "STOP")
    assert [o.kind for o in _owed(world, carried)] == [MessageKind.OPT_OUT]
    # and a text from B (still opted out) to A (opted out) is withheld without a notice to B
    assert _handle(world, B, b.proxy_number, "b1", "hi").sends == ()
