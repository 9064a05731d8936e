"""A delivery receipt that races the send's own bookkeeping never leaves the send undelivered."""

from __future__ import annotations

import threading
import time

import pytest

from shared.domain import MessageKind, OutboundSms
from shared.messages import MessageLog

pytestmark = pytest.mark.integration

ROUNDS = 200


def test_a_receipt_racing_the_senders_record_keeps_the_send_delivered(real_redis):
    messages = MessageLog(real_redis)
    undelivered = []
    for n in range(ROUNDS):
        outbound_id = f"relay-race-{n}"
        messages.owe(OutboundSms(outbound_id, "c" * 32, MessageKind.RELAY, "447700900100",
                                 "447400100001", "hello", created_at=time.time()))
        assert messages.claim_send(outbound_id, 60).acquired  # the sender calls Vonage...
        barrier = threading.Barrier(2)

        vonage_id = f"v{n}"

        def sender(outbound_id=outbound_id, vonage_id=vonage_id, barrier=barrier):
            barrier.wait()  # ...and records what Vonage answered, as the receipt comes in
            messages.mark_submitted(outbound_id, [vonage_id], retain_body=False)

        def receipt(outbound_id=outbound_id, vonage_id=vonage_id, barrier=barrier):
            barrier.wait()
            messages.apply_receipt(outbound_id, vonage_id, "delivered", "0")

        threads = [threading.Thread(target=sender), threading.Thread(target=receipt)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if messages.outbound_state(outbound_id) != "delivered":
            undelivered.append(outbound_id)
    assert undelivered == [], f"{len(undelivered)} of {ROUNDS} left undelivered"
