"""A finished intro's record folds into its conversation's hash (shared/folded_intros.py): the
trail, state, claims, late receipts and erasure answer as they did with the record's own key."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from shared import folded_intros
from shared.domain import ERASED, ConversationStatus
from shared.keys import Keys
from shared.messages import MessageLog
from tests.conftest import TEST_CLIENT
from tests.doubles import FakeVonage
from tests.shared.conftest import POOL, A, B, World

KEYS = Keys()


def _send(world: World, intro: str, vonage_ids: list[str]) -> None:
    world.services.messages.mark_submitted(intro, vonage_ids, retain_body=False)


def _deliver(world: World, intros: list[str]) -> None:
    for n, intro in enumerate(intros):
        _send(world, intro, [f"0A00000{n:09d}"])
        world.services.messages.apply_receipt(intro, f"0A00000{n:09d}", "delivered", "0")


def _trail(world: World, conversation_id: str) -> list[object]:
    return list(world.services.messages.trail(conversation_id, first=_intro_ids(conversation_id),
                                              with_text=True))


def _intro_ids(conversation_id: str) -> list[str]:
    return [f"intro-{conversation_id}-{side}" for side in range(2)]


def test_a_delivered_intro_folds_into_its_conversation_and_reads_back_the_same(world, fake_redis):
    intros, conversation = world.start()
    log = world.services.messages
    for n, intro in enumerate(intros):
        _send(world, intro, [f"0A00000{n:09d}"])
    # the state just before the last receipts: records of their own, as before
    log.apply_receipt(intros[0], "0A00000000000000", "accepted", "0")
    before = _trail(world, conversation.id)
    for n, intro in enumerate(intros):
        log.apply_receipt(intro, f"0A00000{n:09d}", "delivered", "0")
    assert not any(fake_redis.exists(KEYS.outbound(i)) for i in intros)
    stored = fake_redis.hgetall(KEYS.conversation(conversation.id))
    assert set(folded_intros.FIELDS) <= stored.keys()
    assert all(len(stored[f]) <= folded_intros.MAX_VALUE_BYTES for f in folded_intros.FIELDS)
    after = _trail(world, conversation.id)
    assert [replace(e, state="delivered", part_receipts=("delivered",)) for e in before] == after
    assert [log.outbound_state(i) for i in intros] == ["delivered", "delivered"]
    # the conversation reads back as before (the folded fields are not its own)
    assert world.services.conversation_store.get(conversation.id) == conversation


def test_a_folded_intro_is_never_claimed_owed_or_recorded_again(world, fake_redis):
    intros, conversation = world.start()
    _deliver(world, intros)
    log = world.services.messages
    claim = log.claim_send(intros[0], 60)
    assert (claim.acquired, claim.state) == (False, "delivered")
    # the sender's own record of Vonage's answer, after the receipt folded it: no half record
    log.mark_submitted(intros[0], ["0A000000000000000"], retain_body=False)
    assert not fake_redis.exists(KEYS.outbound(intros[0]))
    # nor failed by a sender that read it owed just before the receipt (an expiry's race)
    assert log.mark_failed(intros[0], "expired", "not sent in time", retain_body=False) is False
    assert not fake_redis.exists(KEYS.outbound(intros[0]))
    # a create retried past activation owes the intros again: they stay as they are
    world.services.conversations._owe_intros(conversation)
    assert not fake_redis.exists(KEYS.outbound(intros[0]), KEYS.outbound_text(intros[0]))
    assert log.outbound(intros[0]) is None
    assert [e.state for e in _trail(world, conversation.id)] == ["delivered", "delivered"]


def test_late_receipts_for_a_folded_intro_apply_as_they_did_to_its_record(world, fake_redis):
    intros, conversation = world.start()
    _deliver(world, intros)
    log = world.services.messages
    # a duplicate: matched, nothing changes, folded again
    assert log.apply_receipt(intros[0], "0A00000000000000", "delivered", "0") == intros[0]
    assert not fake_redis.exists(KEYS.outbound(intros[0]))
    # a part that failed after all: the send is failed, with the receipt's error
    assert log.apply_receipt(intros[1], "0A00000000000001", "failed", "6") == intros[1]
    (first, second) = _trail(world, conversation.id)
    assert (first.state, second.state, second.part_receipts) == ("delivered", "failed",
                                                                  ("failed",))
    assert not fake_redis.exists(KEYS.outbound(intros[1]))
    raw = fake_redis.hgetall(KEYS.conversation(conversation.id))
    assert (folded_intros.unfold(raw["1"], raw, 1) or {}).get("receipt_error") == "6"
    # a receipt naming a part never heard of: counted as before, even if it no longer fits
    log.apply_receipt(intros[0], "0B" + "1" * 60, "delivered", "0")
    assert _trail(world, conversation.id)[0].part_receipts == ("delivered", "delivered")
    assert fake_redis.exists(KEYS.outbound(intros[0]))  # too long to fold: its record again
    assert fake_redis.ttl(KEYS.outbound(intros[0])) > 0


def test_a_multi_part_intro_folds_once_every_part_is_delivered(world, fake_redis):
    intros, conversation = world.start()
    log = world.services.messages
    _send(world, intros[0], ["0A0000000000000A", "0A0000000000000B"])
    log.apply_receipt(intros[0], "0A0000000000000A", "delivered", "0")
    assert fake_redis.exists(KEYS.outbound(intros[0]))  # a part still owes its receipt
    log.apply_receipt(intros[0], "0A0000000000000B", "delivered", "0")
    assert not fake_redis.exists(KEYS.outbound(intros[0]))
    (entry, _) = log.trail(conversation.id, first=intros)
    assert (entry.parts, entry.part_receipts) == (2, ("delivered", "delivered"))


def test_a_proxy_that_moves_after_the_fold_leaves_the_intros_sender_as_it_was(world):
    intros, conversation = world.start()
    _deliver(world, intros)
    sent_from = conversation.participants[0].proxy_number
    store = world.services.conversation_store
    store.transition(conversation.id, lambda c: replace(c, participants=(
        replace(c.participants[0], proxy_number="447700900999"), c.participants[1])))
    assert _trail(world, conversation.id)[0].sender == sent_from


def test_erasing_a_person_erases_them_from_folded_intros_too(world, fake_redis):
    intros, conversation = world.start()
    _deliver(world, intros)
    erasure = world.services.conversations.erase_participant(A, client=TEST_CLIENT)
    assert erasure.messages == 1
    first, second = _trail(world, conversation.id)
    assert first.recipient == ERASED and second.recipient == B
    raw = fake_redis.hgetall(KEYS.conversation(conversation.id))
    assert A not in "".join(raw.values())
    # again: nothing left to change
    assert world.services.conversations.erase_participant(A, client=TEST_CLIENT).messages == 0


def test_a_folded_intro_ages_out_with_its_retention(make_services, fake_redis, monkeypatch):
    services = make_services(SMSPROXY_RETENTION_SECONDS="3600")
    for number in POOL:
        services.inventory.add(number, "GB")
    world = World(services, FakeVonage())
    intros, conversation = world.start()
    _deliver(world, intros)
    later = time.time() + 3601
    monkeypatch.setattr("shared.messages.time.time", lambda: later)
    assert _trail(world, conversation.id) == []
    # a receipt now is for a record aged out, as it would have been
    assert services.messages.apply_receipt(intros[0], "0A00000000000000", "delivered",
                                           "0") is None


def test_a_conversation_that_becomes_a_json_string_gives_its_intros_their_records_back(
    world, fake_redis
):
    intros, conversation = world.start()
    _deliver(world, intros)
    before = _trail(world, conversation.id)
    world.services.conversation_store.transition(
        conversation.id, lambda c: replace(c, metadata={"note": "x" * 100}))
    assert fake_redis.type(KEYS.conversation(conversation.id)) == "string"
    assert all(fake_redis.exists(KEYS.outbound(i)) for i in intros)
    assert _trail(world, conversation.id) == before


@pytest.mark.parametrize("field,value", [("created_at", "1700000000.1234567"),
                                         ("kind", "intro")])
def test_a_record_the_codec_cannot_say_keeps_its_key(world, fake_redis, field, value):
    intros, conversation = world.start()
    fake_redis.hset(KEYS.outbound(intros[0]), field, value)
    _deliver(world, intros)
    assert fake_redis.exists(KEYS.outbound(intros[0]))
    assert not fake_redis.exists(KEYS.outbound(intros[1]))
    assert [e.state for e in _trail(world, conversation.id)] == ["delivered", "delivered"]


def test_the_python_codec_reads_what_the_script_folded(world, fake_redis):
    intros, conversation = world.start()
    log: MessageLog = world.services.messages
    _send(world, intros[0], ["0A00000000000000"])
    log.apply_receipt(intros[0], "0A00000000000000", "accepted", "0")
    record = fake_redis.hgetall(KEYS.outbound(intros[0]))
    log.apply_receipt(intros[0], "0A00000000000000", "delivered", "4")
    raw = fake_redis.hgetall(KEYS.conversation(conversation.id))
    unfolded = folded_intros.unfold(raw["0"], raw, 0)
    assert unfolded is not None
    expected = {**record, "state": "delivered", "receipt_error": "4"}
    assert {k: v for k, v in unfolded.items() if k not in {"receipts", "receipt_at"}} == {
        k: v for k, v in expected.items() if k not in {"receipts", "receipt_at"}
    } | {"created_at": unfolded["created_at"], "submitted_at": unfolded["submitted_at"]}
    assert float(unfolded["created_at"]) == float(record["created_at"])
    assert float(unfolded["submitted_at"]) == float(record["submitted_at"])
    assert conversation.status is ConversationStatus.ACTIVE
