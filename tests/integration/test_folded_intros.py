"""On a real Redis: a conversation's intros, sent through the real Sender and delivered, fold
into its hash (shared/folded_intros.py) with the same trail as before; late receipts apply;
the sender's own record racing the receipt that folds never makes a half record or a second
send; erasure leaves no trace of the person; an intro in the previous release's layout folds at
its next receipt."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from shared.clock import now
from shared.domain import ERASED, Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.outbound import intro_ids
from shared.wiring import Services
from tests.doubles import FakeVonage

pytestmark = pytest.mark.integration

KEYS = Keys()
A, B = "447400100001", "447400100002"


@pytest.fixture
def svc(pooled_services: Services) -> Services:
    return pooled_services


def start(svc: Services, conversation_id: str) -> Conversation:
    conversation = Conversation(
        id=conversation_id,
        participants=(Participant(A, display_name="Rita"), Participant(B)),
        status=ConversationStatus.PENDING, created_at=now(), ttl_seconds=600,
        client="rides",
    )
    svc.conversation_store.add(conversation)
    established = svc.conversations.establish(conversation.id, FakeVonage())
    assert established.conversation is not None
    assert established.conversation.status is ConversationStatus.ACTIVE
    return established.conversation


def send_intros(svc: Services, conversation_id: str, vonage: FakeVonage) -> list[str]:
    """Both intros through the real Sender; their Vonage ids."""
    for intro in intro_ids(conversation_id):
        svc.sender.send(intro, vonage)
    return [str(s["client_ref"]) for s in vonage.sent]


def trail(svc: Services, conversation_id: str) -> list[object]:
    return list(svc.messages.trail(conversation_id, intro_ids(conversation_id)))


def test_delivered_intros_fold_with_the_same_trail_and_take_late_receipts(svc, real_redis):
    conversation = start(svc, "F0ldedIntros0001")
    vonage = FakeVonage()
    send_intros(svc, conversation.id, vonage)
    ids = [f"v{n + 1}" for n in range(2)]
    intros = intro_ids(conversation.id)
    for intro, vonage_id in zip(intros, ids, strict=True):
        svc.messages.apply_receipt(intro, vonage_id, "accepted", "0")
    accepted = trail(svc, conversation.id)
    for intro, vonage_id in zip(intros, ids, strict=True):
        assert svc.messages.apply_receipt(intro, vonage_id, "delivered", "0") == intro
    assert not any(real_redis.exists(KEYS.outbound(i)) for i in intros)
    assert real_redis.object("encoding", KEYS.conversation(conversation.id)) == "listpack"
    delivered = trail(svc, conversation.id)
    assert delivered == [replace(e, state="delivered", part_receipts=("delivered",))
                         for e in accepted]
    assert [(e.sender, e.recipient, e.attempts) for e in delivered] == [
        (conversation.participants[0].proxy_number, A, 1),
        (conversation.participants[1].proxy_number, B, 1)]

    # the Sender, run again (a redelivered task), finds nothing to send
    svc.sender.send(intros[0], vonage)
    assert len(vonage.sent) == 2
    # a late duplicate, then a failure: applied as to a record, folded again
    svc.messages.apply_receipt(intros[0], ids[0], "delivered", "0")
    svc.messages.apply_receipt(intros[1], ids[1], "failed", "6")
    assert [e.state for e in trail(svc, conversation.id)] == ["delivered", "failed"]
    assert not any(real_redis.exists(KEYS.outbound(i)) for i in intros)
    # the conversation goes on changing (extend, close) and keeps them
    svc.conversation_store.extend(conversation.id, now() + 60)
    svc.conversations.close(conversation.id)
    assert [e.state for e in trail(svc, conversation.id)] == ["delivered", "failed"]


def test_the_senders_record_racing_the_folding_receipt_leaves_it_delivered(svc, real_redis):
    for n in range(50):
        conversation = start(svc, f"RaceFold{n:08d}")
        intro = intro_ids(conversation.id)[0]
        claim = svc.messages.claim_send(intro, 60)
        assert claim.acquired  # the sender calls Vonage...
        barrier = threading.Barrier(2)

        def sender(intro: str = intro, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()  # ...and records its answer as the receipt comes in
            svc.messages.mark_submitted(intro, ["0A0000000000000F"], retain_body=False)

        def receipt(intro: str = intro, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            svc.messages.apply_receipt(intro, "0A0000000000000F", "delivered", "0")

        threads = [threading.Thread(target=sender), threading.Thread(target=receipt)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert svc.messages.outbound_state(intro) == "delivered"
        assert not real_redis.exists(KEYS.outbound(intro))  # folded, no half record
        (entry, _) = trail(svc, conversation.id)
        assert (entry.state, entry.part_receipts) == ("delivered", ("delivered",))
        assert not svc.messages.claim_send(intro, 60).acquired
        svc.conversations.close(conversation.id)  # its proxies free for the next round


def test_erasing_a_person_of_a_folded_conversation_leaves_nothing_naming_them(svc, real_redis):
    conversation = start(svc, "EraseFolded00001")
    send_intros(svc, conversation.id, FakeVonage())
    for n, intro in enumerate(intro_ids(conversation.id)):
        svc.messages.apply_receipt(intro, f"v{n + 1}", "delivered", "0")
    erased = svc.conversations.erase_participant(A, "rides")
    assert (erased.conversations, erased.messages) == (1, 1)
    first, second = trail(svc, conversation.id)
    assert (first.recipient, second.recipient) == (ERASED, B)
    for key in real_redis.keys("*"):
        assert A not in key, key
        assert A.encode() not in (real_redis.dump(key) or b""), key
    # a receipt after erasure still applies, and brings no number back
    svc.messages.apply_receipt(intro_ids(conversation.id)[0], "v1", "delivered", "0")
    assert all(A.encode() not in (real_redis.dump(k) or b"") for k in real_redis.keys("*"))
    again = svc.conversations.erase_participant(A, "rides")
    assert (again.conversations, again.messages) == (0, 0)


def test_an_intro_in_the_previous_layout_folds_at_its_next_receipt(svc, real_redis):
    conversation = start(svc, "PreviousLayout01")
    intro = intro_ids(conversation.id)[0]
    # as the previous release left a delivered intro: a record of its own
    real_redis.delete(KEYS.outbound_text(intro))
    real_redis.zrem(KEYS.outbound_open(), intro)
    real_redis.hset(KEYS.outbound(intro), mapping={
        "state": "delivered", "vonage_ids": json.dumps(["0A000001"]), "parts": "1",
        "submitted_at": "1796000001.5", "receipts": json.dumps({"0A000001": "delivered"}),
        "receipt_at": "1796000002.25"})
    before = trail(svc, conversation.id)[0]
    assert real_redis.exists(KEYS.outbound(intro))  # read as it is until its next receipt
    svc.messages.apply_receipt(intro, "0A000001", "delivered", "0")
    assert not real_redis.exists(KEYS.outbound(intro))
    assert trail(svc, conversation.id)[0] == before
