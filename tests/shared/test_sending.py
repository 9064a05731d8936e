"""The one Vonage call per owed send: retries, bounds, rate limit, doubt, late records."""

import time
from dataclasses import replace

import pytest
import redis as redis_module

from shared.domain import MessageKind, OutboundSms
from shared.messages import UNREPLICATED, SendClaim
from shared.sending import InDoubt, RecordLater, RetryLater, Throttled
from shared.vonage_gateway import VonageFailure
from tests.doubles import FakeVonage
from tests.shared.conftest import A, inbound


def owed(world, message_id, text):
    _, conversation = world.start()
    return world.relay(A, conversation.participants[0].proxy_number, message_id, text)


def test_transient_send_failure_retries_then_permanent_failure_is_recorded(world):
    outbound = owed(world, "m3", "retry me")
    sender, vonage, messages = world.services.sender, world.vonage, world.services.messages
    vonage.failures = [VonageFailure("1", "Throttled", transient=True),
                       VonageFailure("7", "Number barred", transient=False)]
    with pytest.raises(RetryLater):
        sender.send(outbound.id, vonage)
    sender.send(outbound.id, vonage)
    assert messages.outbound_state(outbound.id) == "failed"
    sender.send(outbound.id, vonage)  # a redelivery does nothing more
    assert vonage.sent == []


def test_attempts_are_bounded(world):
    outbound = owed(world, "m5", "keeps failing")
    sender, vonage = world.services.sender, world.vonage
    vonage.failures = [VonageFailure("5", "Internal", transient=True) for _ in range(20)]
    retries = 0
    while True:
        try:
            sender.send(outbound.id, vonage)
        except RetryLater as exc:
            retries += 1
            assert exc.attempts == retries
            continue
        break
    assert retries == 7  # the 8th attempt (SMSPROXY_SEND_MAX_ATTEMPTS) is final
    assert world.services.messages.outbound_state(outbound.id) == "failed"


def test_too_old_message_is_failed_not_sent(world, monkeypatch):
    outbound = owed(world, "m6", "late")
    real_time = time.time
    monkeypatch.setattr("shared.sending.time.time", lambda: real_time() + 3601)
    world.services.sender.send(outbound.id, world.vonage)
    assert world.vonage.sent == []
    assert world.services.messages.outbound_state(outbound.id) == "failed"


def test_shared_rate_limit_throttles_without_spending_attempts(make_services):
    services = make_services(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    messages = services.messages
    for i in range(2):
        messages.owe(OutboundSms(f"o{i}", None, MessageKind.RELAY, "447700900100", A, "x",
                                 created_at=time.time()))
    vonage = FakeVonage()
    services.sender.send("o0", vonage)
    with pytest.raises(Throttled) as info:
        services.sender.send("o1", vonage)
    assert 0 < info.value.wait <= 1.0
    assert messages.outbound_state("o1") == "queued"


def test_a_send_in_doubt_waits_for_the_lease_and_a_receipt_settles_it(world):
    outbound = owed(world, "m7", "in doubt")
    sender, vonage, messages = world.services.sender, world.vonage, world.services.messages
    # an attempt claimed it and died mid-call
    assert messages.claim_send(outbound.id, sender.lease_seconds).acquired
    with pytest.raises(InDoubt) as info:
        sender.send(outbound.id, vonage)
    assert info.value.wait > 30  # the lease outlives the visibility timeout
    # Vonage had taken it: its receipt names the send by client-ref and settles the doubt
    assert messages.apply_receipt(outbound.id, "v-late", "delivered", "0") == outbound.id
    assert messages.outbound_state(outbound.id) == "delivered"
    sender.send(outbound.id, vonage)
    assert vonage.sent == []  # never sent a second time


def test_a_send_vonage_took_but_redis_could_not_record_is_recorded_later(world, monkeypatch):
    outbound = owed(world, "m8", "record me")
    sender, vonage, messages = world.services.sender, world.vonage, world.services.messages

    def broken(*_, **__):
        raise redis_module.ConnectionError("restarting")

    with monkeypatch.context() as patch:
        patch.setattr(messages, "mark_submitted", broken)
        with pytest.raises(RecordLater) as info:
            sender.send(outbound.id, vonage)
    sender.record_sent(outbound.id, info.value.message_ids)
    assert messages.outbound_state(outbound.id) == "submitted"
    sender.send(outbound.id, vonage)
    assert len(vonage.sent) == 1


def test_receipts_complete_the_audit_trail(world):
    _, conversation = world.start()
    outbound = world.relay(A, conversation.participants[0].proxy_number, "m4", "track me")
    messages = world.services.messages
    world.services.sender.send(outbound.id, world.vonage)
    assert messages.apply_receipt(outbound.id, "v1", "delivered", "0") == outbound.id
    from shared.outbound import intro_ids

    trail = messages.trail(conversation.id, first=intro_ids(conversation.id))
    assert [e.record for e in trail] == ["out", "out", "in", "out"]
    assert trail[-1].state == "delivered"
    assert trail[-1].text is None  # bodies are not retained by default
    assert messages.apply_receipt("unknown", "v9", "delivered", "0") is None
    assert messages.apply_receipt(None, "v1", "delivered", "0") is None


def test_a_multipart_send_settled_in_doubt_is_delivered_only_with_every_part(world):
    _, conversation = world.start()
    long_text = "x" * 300  # two GSM-7 parts of 153 septets
    outbound = world.relay(A, conversation.participants[0].proxy_number, "m9", long_text)
    messages = world.services.messages
    # an attempt claimed it and died mid-call: Vonage's answer (two message ids) was never seen
    assert messages.claim_send(outbound.id, world.services.sender.lease_seconds).acquired
    messages.apply_receipt(outbound.id, "v-part-1", "delivered", "0")
    assert messages.outbound_state(outbound.id) == "submitted"
    messages.apply_receipt(outbound.id, "v-part-2", "delivered", "0")
    assert messages.outbound_state(outbound.id) == "delivered"


def test_a_multipart_send_is_delivered_only_when_every_part_is(world):
    _, conversation = world.start()
    outbound = world.relay(A, conversation.participants[0].proxy_number, "m10", "y" * 400)
    world.services.sender.send(outbound.id, world.vonage)
    messages = world.services.messages
    messages.apply_receipt(outbound.id, "v1", "delivered", "0")
    assert messages.outbound_state(outbound.id) == "submitted"
    messages.apply_receipt(outbound.id, "v1-1", "delivered", "0")
    assert messages.outbound_state(outbound.id) == "submitted"  # three parts
    messages.apply_receipt(outbound.id, "v1-2", "failed", "6")
    assert messages.outbound_state(outbound.id) == "failed"


def test_a_send_in_doubt_is_counted_until_settled(world):
    outbound = owed(world, "m8", "in doubt")
    sender, vonage, messages = world.services.sender, world.vonage, world.services.messages
    doubt = world.services.redis.zcard
    assert messages.claim_send(outbound.id, sender.lease_seconds).acquired
    for _ in range(2):  # met twice: one send in doubt, two waits
        with pytest.raises(InDoubt):
            sender.send(outbound.id, vonage)
    assert doubt("smsproxy:out:doubt") == 1
    assert world.services.counters.snapshot()[
        'smsproxy_outbound_waits_total{reason="in_doubt"}'] == 2
    messages.apply_receipt(outbound.id, "v-late", "delivered", "0")
    sender.send(outbound.id, vonage)  # finds it settled
    assert doubt("smsproxy:out:doubt") == 0


def test_a_relay_records_the_time_since_its_webhook_was_received(world):
    _, conversation = world.start()
    received = time.time() - 2.0  # the webhook came two seconds ago
    whole = world.services.reassembler.reassemble(replace(
        inbound(A, conversation.participants[0].proxy_number, "m9", "hello"),
        received_at=received))
    (relay_id,) = world.services.inbound.handle(whole).sends
    world.services.sender.send(relay_id, world.vonage)
    world.services.tallies.flush()  # the process's buffered counts, as /metrics would
    snapshot = world.services.counters.snapshot()
    assert snapshot['smsproxy_outbound_sends_total{outcome="sent"}'] == 1
    assert snapshot["smsproxy_relay_latency_seconds_count"] == 1
    assert snapshot['smsproxy_relay_latency_seconds_bucket{le="2.5"}'] == 1
    assert snapshot["smsproxy_relay_latency_seconds_sum"] >= 2.0


def test_a_claim_no_replica_confirmed_is_not_sent_until_one_does(world, monkeypatch):
    # the WAIT itself runs on a real master and replica: tests/integration/test_sentinel.py
    outbound = owed(world, "m-unreplicated", "after the failover")
    messages = world.services.messages
    real_claim = messages.claim_send
    monkeypatch.setattr(messages, "claim_send",
                        lambda *a, **k: SendClaim(acquired=False, state=UNREPLICATED))
    with pytest.raises(InDoubt):
        world.services.sender.send(outbound.id, world.vonage)
    assert world.vonage.sent == []
    monkeypatch.setattr(messages, "claim_send", real_claim)
    world.services.sender.send(outbound.id, world.vonage)  # confirmed the next time: sent
    assert len(world.vonage.sent) == 1
    assert messages.outbound_state(outbound.id) == "submitted"


def test_a_sent_record_leaves_the_in_doubt_set_also_after_a_receipt_completed_it(world):
    """The script that records the send takes it out of the in-doubt set, whether it records
    anything or finds the record completed by a receipt that came first."""
    outbound = owed(world, "m10", "doubted")
    client, messages = world.services.redis, world.services.messages
    client.zadd("smsproxy:out:doubt", {outbound.id: time.time()})
    messages.claim_send(outbound.id, 60)
    messages.apply_receipt(outbound.id, "v-early", "delivered", "0")  # the receipt came first
    assert client.zscore("smsproxy:out:doubt", outbound.id) is not None

    world.services.sender.record_sent(outbound.id, ["v-early"])

    assert client.zscore("smsproxy:out:doubt", outbound.id) is None
    assert messages.outbound_state(outbound.id) == "delivered"
