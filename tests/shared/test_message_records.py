"""What an outbound record stores: an intro's id names its conversation and kind, so they are
not stored again; every other send keeps them; records written with them are read as before."""

from shared.domain import MessageKind, OutboundSms
from shared.keys import Keys
from shared.messages import MessageLog
from shared.outbound import intro_id

KEYS = Keys()
CONVERSATION = "q3Zb-8c1E9d7a4_6"  # a '-' in the id: the side is after the last one


def test_an_intro_record_leaves_out_what_its_id_says_and_reads_back_whole(fake_redis):
    log = MessageLog(fake_redis)
    intro = OutboundSms(intro_id(CONVERSATION, 1), CONVERSATION, MessageKind.INTRO,
                        "447700900001", "447400100002", "Text +44 7700 900001")
    assert log.owe(intro, in_trail=False)
    stored = fake_redis.hgetall(KEYS.outbound(intro.id))
    assert not {"conversation_id", "kind", "expected_parts"} & stored.keys()
    found = log.outbound(intro.id)
    assert found is not None
    assert (found.conversation_id, found.kind, found.sender, found.recipient, found.text) == (
        CONVERSATION, MessageKind.INTRO, intro.sender, intro.recipient, intro.text)
    (entry,) = log.trail(CONVERSATION, [intro.id])
    assert entry.kind == "intro" and entry.recipient == "447400100002"


def test_other_sends_and_old_intro_records_keep_their_conversation_and_kind(fake_redis):
    log = MessageLog(fake_redis)
    relay = OutboundSms("relay-m1", CONVERSATION, MessageKind.RELAY, "447700900001",
                        "447400100002", "x" * 200)  # two parts: stored, a receipt needs it
    log.owe(relay)
    stored = fake_redis.hgetall(KEYS.outbound(relay.id))
    assert (stored["conversation_id"], stored["kind"], stored["expected_parts"]) == (
        CONVERSATION, "relay", "2")
    # an intro written before intros left them out
    old = intro_id("3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f", 0)
    fake_redis.hset(KEYS.outbound(old), mapping={
        "state": "queued", "conversation_id": "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f",
        "kind": "intro", "from": "447700900001", "to": "447400100001",
        "created_at": "1700000000.1234567", "attempts": "0", "expected_parts": "1"})
    fake_redis.set(KEYS.outbound_text(old), "hello")
    found = log.outbound(old)
    assert found is not None and found.conversation_id == "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"
    # a record that is only half one (no sender) is not a send owed
    fake_redis.hset(KEYS.outbound(intro_id(CONVERSATION, 0)), "state", "queued")
    fake_redis.set(KEYS.outbound_text(intro_id(CONVERSATION, 0)), "hello")
    assert log.outbound(intro_id(CONVERSATION, 0)) is None


def test_a_send_is_marked_failed_only_while_it_is_still_owed(fake_redis):
    log = MessageLog(fake_redis)
    relay = OutboundSms("relay-m2", CONVERSATION, MessageKind.RELAY, "447700900001",
                        "447400100002", "hello")
    log.owe(relay)
    assert log.claim_send(relay.id, 60).acquired
    # the attempt's outcome was in doubt; its receipt came and finished the record...
    assert log.apply_receipt(relay.id, "0A0000000000000001", "delivered", "0") == relay.id
    # ...before the worker, retrying, gave up on it (its age, or a permanent error)
    assert log.mark_failed(relay.id, "expired", "not sent in time", retain_body=False) is False
    assert log.outbound_state(relay.id) == "delivered"
    assert "error_code" not in fake_redis.hgetall(KEYS.outbound(relay.id))
    # one still owed is failed, its body and claim gone, no longer open
    owed = OutboundSms("relay-m3", CONVERSATION, MessageKind.RELAY, "447700900001",
                       "447400100002", "hello")
    log.owe(owed)
    assert log.claim_send(owed.id, 60).acquired
    assert log.mark_failed(owed.id, "6", "unroutable", retain_body=False) is True
    stored = fake_redis.hgetall(KEYS.outbound(owed.id))
    assert (stored["state"], stored["error_code"], stored["error_reason"]) == (
        "failed", "6", "unroutable")
    assert not fake_redis.exists(KEYS.outbound_text(owed.id), KEYS.send_claim(owed.id))
    assert owed.id not in fake_redis.zrange(KEYS.outbound_open(), 0, -1)
    # unknown sends make no half record
    assert log.mark_failed("relay-none", "6", "unroutable", retain_body=False) is False
    assert not fake_redis.exists(KEYS.outbound("relay-none"))
