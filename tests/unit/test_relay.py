"""The message path's rules with fakeredis and an in-memory Vonage port."""

import pytest

from shared.conversations import Conversations, intro_id
from shared.domain import Conversation, ConversationStatus, InboundSms, Participant
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.relay import Relay, RetryLater
from shared.store import ConversationStore
from shared.vonage_gateway import VonageFailure
from tests.doubles import FakeVonage

A, B = "447400100001", "447400100002"


@pytest.fixture
def world(fake_redis, make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="This conversation has ended.",
                             SMSPROXY_SEND_RATE_PER_SECOND="0")
    store = ConversationStore(fake_redis)
    for number in ("447700900100", "447700900101"):
        store.add_pool_number(number, "GB")
    messages, counters = MessageLog(fake_redis), Counters(fake_redis)
    conversations = Conversations(store, messages, counters, settings)
    relay = Relay(fake_redis, store, messages, counters, settings)
    return store, messages, counters, conversations, relay, FakeVonage()


def start(world, display_names=("Rider", "Driver")):
    store, _, _, conversations, _, vonage = world
    conversation = Conversation(
        id="c" * 32,
        participants=(Participant(A, display_name=display_names[0]),
                      Participant(B, display_name=display_names[1])),
        status=ConversationStatus.PENDING,
        created_at=1.0,
        ttl_seconds=3600,
    )
    store.add(conversation)
    outcome = conversations.establish(conversation.id, vonage)
    return list(outcome.intro_ids), store.get(conversation.id)


def inbound(sender, to, message_id, text, **concat):
    params = {"msisdn": sender, "to": to, "messageId": message_id, "text": text}
    if concat:
        params["concat"] = "true"
        params.update({k.replace("_", "-"): str(v) for k, v in concat.items()})
    return InboundSms.from_params(params)


def test_establish_allocates_and_owes_two_intros(world):
    intro_ids, conversation = start(world)
    assert conversation.status is ConversationStatus.ACTIVE
    assert intro_ids == [intro_id(conversation.id, 0), intro_id(conversation.id, 1)]
    messages = world[1]
    first = messages.outbound(intro_ids[0])
    assert first.recipient == A
    assert first.sender == conversation.participants[0].proxy_number
    assert "Driver" in first.text
    # running it again owes nothing new and keeps the same proxies
    again, same = start_again(world, conversation.id)
    assert again == intro_ids and same == conversation


def start_again(world, conversation_id):
    store, _, _, conversations, _, vonage = world
    outcome = conversations.establish(conversation_id, vonage)
    assert not outcome.changed
    return list(outcome.intro_ids), store.get(conversation_id)


def test_invalid_number_fails_the_conversation_naming_the_participant(world):
    world[5].invalid.add(B)
    intro_ids, conversation = start(world)
    assert intro_ids == []
    assert conversation.status is ConversationStatus.FAILED
    assert conversation.failure_reason.startswith("participant 2: invalid number")


def test_transient_insight_failure_propagates_for_retry(world):
    vonage = world[5]
    vonage.basic_insight = lambda msisdn: (_ for _ in ()).throw(
        VonageFailure("1", "busy", transient=True))
    with pytest.raises(VonageFailure):
        start(world)


def test_message_from_a_reaches_b_from_bs_proxy(world):
    _, conversation = start(world)
    relay = world[4]
    a, b = conversation.participants
    whole = relay.reassemble(inbound(A, a.proxy_number, "m1", "hello B"))
    outbound = relay.plan(whole).outbound
    assert (outbound.sender, outbound.recipient, outbound.text) == (b.proxy_number, B, "hello B")
    relay.send(outbound.id, world[5])
    assert world[5].sent == [
        {"from": b.proxy_number, "to": B, "text": "hello B", "client_ref": outbound.id}
    ]


def test_redelivered_relay_sends_once(world):
    _, conversation = start(world)
    relay, vonage = world[4], world[5]
    proxy = conversation.participants[0].proxy_number
    for _ in range(3):
        outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m1", "once"))).outbound
        relay.send(outbound.id, vonage)
    assert [s["text"] for s in vonage.sent] == ["once"]
    assert world[2].snapshot()["smsproxy.inbound.relayed"] == 1


def test_multipart_reassembles_in_any_order_and_relays_once(world):
    _, conversation = start(world)
    relay = world[4]
    proxy = conversation.participants[0].proxy_number
    parts = {3: "world", 1: "hello ", 2: "big "}
    results = [
        relay.reassemble(inbound(A, proxy, f"p{n}", t, concat_ref="r1", concat_part=n,
                                 concat_total=3))
        for n, t in parts.items()
    ]
    assert [type(r).__name__ for r in results] == ["Pending", "Pending", "Reassembled"]
    assert [r.first for r in results[:2]] == [True, False]  # only the first schedules a flush
    assert results[2].text == "hello big world"
    assert results[2].parts == 3
    assert relay.flush_partial(results[0].group) is None  # nothing left to flush


def test_missing_part_is_relayed_with_a_marker_after_the_timeout(world):
    _, conversation = start(world)
    relay = world[4]
    proxy = conversation.participants[0].proxy_number
    pending = relay.reassemble(inbound(A, proxy, "q3", "end", concat_ref="r2", concat_part=3,
                                       concat_total=3))
    relay.reassemble(inbound(A, proxy, "q1", "start ", concat_ref="r2", concat_part=1,
                             concat_total=3))
    partial = relay.flush_partial(pending.group)
    assert partial.text == "start […]end"
    assert partial.parts == 2
    assert relay.plan(partial).outbound.recipient == B
    assert relay.flush_partial(pending.group) is None  # flushed once
    assert world[2].snapshot()["smsproxy.inbound.concat_incomplete"] == 1


def test_unknown_route_is_not_relayed_and_gets_the_reply(world):
    _, conversation = start(world)
    relay = world[4]
    stranger = "447400999999"
    planned = relay.plan(relay.reassemble(inbound(stranger, "447700900100", "m9", "hi?")))
    assert planned.unrouted
    outbound = planned.outbound
    assert outbound.recipient == stranger
    assert outbound.text == "This conversation has ended."
    assert world[2].snapshot()["smsproxy.inbound.unrouted"] == 1


def test_after_close_messages_are_not_relayed(world):
    _, conversation = start(world)
    store, _, _, conversations, relay, _ = world
    conversations.close(conversation.id)
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m2", "still there?"))).outbound
    assert outbound.recipient == A and outbound.kind.value == "out_of_session"


def test_transient_send_failure_retries_then_permanent_failure_is_recorded(world):
    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m3", "retry me"))).outbound
    vonage.failures = [VonageFailure("1", "Throttled", transient=True),
                       VonageFailure("7", "Number barred", transient=False)]
    with pytest.raises(RetryLater):
        relay.send(outbound.id, vonage)
    relay.send(outbound.id, vonage)
    assert messages.outbound_state(outbound.id) == "failed"
    relay.send(outbound.id, vonage)  # a redelivery does nothing more
    assert vonage.sent == []


def test_receipts_complete_the_audit_trail(world):
    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m4", "track me"))).outbound
    relay.send(outbound.id, vonage)
    assert messages.apply_receipt(outbound.id, "v1", "delivered", "0") == outbound.id
    trail = messages.trail(conversation.id, first=[intro_id(conversation.id, i) for i in (0, 1)])
    assert [e["record"] for e in trail] == ["out", "out", "in", "out"]
    assert trail[-1]["state"] == "delivered"
    assert "text" not in trail[-1]  # bodies are not retained by default
    assert messages.apply_receipt("unknown", "v9", "delivered", "0") is None
    assert messages.apply_receipt(None, "v1", "delivered", "0") is None


def test_expire_due_ends_conversations_and_frees_routes(world, monkeypatch):
    _, conversation = start(world)
    store, conversations = world[0], world[3]
    monkeypatch.setattr("shared.conversations.now", lambda: conversation.expires_at + 1)
    assert [c.id for c in conversations.expire_due()] == [conversation.id]
    assert store.get(conversation.id).status is ConversationStatus.EXPIRED
    a = conversation.participants[0]
    assert store.find_route(a.number, a.proxy_number) is None


def test_attempts_are_bounded(world, make_settings, fake_redis):
    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m5", "keeps failing"))).outbound
    vonage.failures = [VonageFailure("5", "Internal", transient=True) for _ in range(20)]
    retries = 0
    while True:
        try:
            relay.send(outbound.id, vonage)
        except RetryLater as exc:
            retries += 1
            assert exc.attempts == retries
            continue
        break
    assert retries == 7  # the 8th attempt (SMSPROXY_SEND_MAX_ATTEMPTS) is final
    assert messages.outbound_state(outbound.id) == "failed"


def test_too_old_message_is_failed_not_sent(world, monkeypatch):
    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m6", "late"))).outbound
    real_time = __import__("time").time
    monkeypatch.setattr("shared.relay.time.time", lambda: real_time() + 3601)
    relay.send(outbound.id, vonage)
    assert vonage.sent == [] and messages.outbound_state(outbound.id) == "failed"


def test_shared_rate_limit_throttles_without_spending_attempts(fake_redis, make_settings):
    from shared.relay import Throttled

    settings = make_settings(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    store = ConversationStore(fake_redis)
    messages, counters = MessageLog(fake_redis), Counters(fake_redis)
    relay = Relay(fake_redis, store, messages, counters, settings)
    from shared.domain import MessageKind, OutboundSms
    for i in range(2):
        messages.owe(OutboundSms(f"o{i}", None, MessageKind.RELAY, "447700900100", A, "x",
                                 created_at=__import__("time").time()))
    vonage = FakeVonage()
    relay.send("o0", vonage)
    with pytest.raises(Throttled) as info:
        relay.send("o1", vonage)
    assert 0 < info.value.wait <= 1.0
    assert messages.outbound_state("o1") == "queued"


def test_a_send_in_doubt_waits_for_the_lease_and_a_receipt_settles_it(world):
    from shared.relay import InDoubt

    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m7", "in doubt"))).outbound
    # an attempt claimed it and died mid-call
    assert messages.claim_send(outbound.id, relay.lease_seconds).acquired
    with pytest.raises(InDoubt) as info:
        relay.send(outbound.id, vonage)
    assert info.value.wait > 30  # the lease outlives the visibility timeout
    # Vonage had taken it: its receipt names the send by client-ref and settles the doubt
    assert messages.apply_receipt(outbound.id, "v-late", "delivered", "0") == outbound.id
    assert messages.outbound_state(outbound.id) == "delivered"
    relay.send(outbound.id, vonage)
    assert vonage.sent == []  # never sent a second time


def test_a_send_vonage_took_but_redis_could_not_record_is_recorded_later(world, monkeypatch):
    import redis as redis_module

    from shared.relay import RecordLater

    _, conversation = start(world)
    relay, vonage, messages = world[4], world[5], world[1]
    proxy = conversation.participants[0].proxy_number
    outbound = relay.plan(relay.reassemble(inbound(A, proxy, "m8", "record me"))).outbound

    def broken(*_, **__):
        raise redis_module.ConnectionError("restarting")

    with monkeypatch.context() as patch:
        patch.setattr(messages, "mark_submitted", broken)
        with pytest.raises(RecordLater) as info:
            relay.send(outbound.id, vonage)
    relay.record_sent(outbound.id, info.value.message_ids)
    assert messages.outbound_state(outbound.id) == "submitted"
    relay.send(outbound.id, vonage)
    assert len(vonage.sent) == 1
