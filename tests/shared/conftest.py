"""A world of real services on fakeredis with an in-memory Vonage, and the steps tests share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.domain import Conversation, ConversationStatus, InboundSms, OutboundSms, Participant
from shared.reassembly import Reassembled
from shared.wiring import Services
from tests.doubles import FakeVonage

A, B = "447400100001", "447400100002"
POOL = ("447700900100", "447700900101")


@dataclass
class World:
    services: Services
    vonage: FakeVonage

    def start(self, display_names: tuple[str, str] = ("Rider", "Driver")) -> tuple[list[str],
                                                                                   Conversation]:
        """Create and establish a conversation between A and B; its intro ids and state."""
        conversation = Conversation(
            id="c" * 32,
            participants=(Participant(A, display_name=display_names[0]),
                          Participant(B, display_name=display_names[1])),
            status=ConversationStatus.PENDING,
            created_at=1.0,
            ttl_seconds=3600,
        )
        store = self.services.conversation_store
        store.add(conversation)
        outcome = self.services.conversations.establish(conversation.id, self.vonage)
        found = store.get(conversation.id)
        assert found is not None
        return list(outcome.intro_ids), found

    def handle(self, whole: Reassembled | object) -> list[OutboundSms]:
        """Carry an inbound message through the rules; the sends it is owed, still unsent."""
        assert isinstance(whole, Reassembled)
        carried = self.services.inbound.handle(whole)
        self.services.reassembler.release(whole)  # as the relay task does once it is recorded
        owed = [self.services.messages.outbound(i) for i in carried.sends]
        assert all(o is not None for o in owed), "a send owed is already finished"
        return [o for o in owed if o is not None]

    def relay_ids(self, sender: str, to: str, message_id: str, text: str) -> list[str]:
        """The ids of the sends a single-part text leads to (finished ones included)."""
        whole = self.services.reassembler.reassemble(inbound(sender, to, message_id, text))
        assert isinstance(whole, Reassembled)
        return list(self.services.inbound.handle(whole).sends)

    def relay(self, sender: str, to: str, message_id: str, text: str) -> OutboundSms:
        """A single-part text that must lead to exactly one send, not yet made."""
        (sent,) = self.handle(self.services.reassembler.reassemble(
            inbound(sender, to, message_id, text)))
        return sent


def inbound(sender: str, to: str, message_id: str, text: str, **concat: object) -> InboundSms:
    params = {"msisdn": sender, "to": to, "messageId": message_id, "text": text}
    if concat:
        params["concat"] = "true"
        params.update({k.replace("_", "-"): str(v) for k, v in concat.items()})
    return InboundSms.from_params(params)


@pytest.fixture
def world(make_services) -> World:
    services = make_services(SMSPROXY_OUT_OF_SESSION_REPLY="This conversation has ended.",
                             SMSPROXY_SEND_RATE_PER_SECOND="0")
    for number in POOL:
        services.inventory.add(number, "GB")
    return World(services, FakeVonage())
