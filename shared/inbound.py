"""An inbound message from the route lookup to the sends it is owed.

`InboundHandler.context` gathers what the rules need (route, conversation, participants);
`shared/inbound_rules.py` decides; `carry_out` records the decision (the audit trail, the sends
owed, counters) and says what the caller must send and publish. Recording is idempotent per
message id, so a redelivered task carries the same decision out to the same effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared import outbound
from shared.clock import now
from shared.conversation_store import ConversationStore
from shared.inbound_rules import Decision, Event, InboundContext, decide
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.reassembly import LatePart, Reassembled
from shared.routes import RouteTable
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Carried:
    """What is left for the caller: the sends owed (ids) and the events to publish."""

    sends: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()


class InboundHandler:
    """Looks up, decides and records; makes no Vonage call and publishes nothing itself."""

    def __init__(
        self,
        routes: RouteTable,
        conversations: ConversationStore,
        messages: MessageLog,
        counters: Counters,
        settings: Settings,
    ) -> None:
        self._routes = routes
        self._conversations = conversations
        self._messages = messages
        self._counters = counters
        self._settings = settings

    def context(self, message: Reassembled) -> InboundContext:
        """The message with its conversation and participants, if a route leads anywhere."""
        conversation_id = self._routes.find(message.sender, message.virtual_number)
        conversation = self._conversations.get(conversation_id) if conversation_id else None
        if conversation is None:
            return InboundContext(message, self._settings)
        sender = next(
            (p for p in conversation.participants if p.number == message.sender), None
        )
        return InboundContext(
            message, self._settings, conversation, sender,
            conversation.counterpart_of(message.sender),
        )

    def handle(self, message: Reassembled) -> Carried:
        """Decide what one whole inbound message leads to, and record it."""
        context = self.context(message)
        return self.carry_out(context, decide(context))

    def carry_out(self, context: InboundContext, decision: Decision) -> Carried:
        message = context.message
        if decision.dropped is not None:
            self._counters.incr(f"smsproxy.inbound.{decision.dropped.value}")
            log.info("inbound %s from %s to %s not relayed: %s", message.message_id,
                     mask(message.sender), mask(message.virtual_number), decision.dropped.value)
        conversation = context.conversation
        if context.routed and conversation is not None:
            if self._settings.extend_on_activity:
                self._conversations.extend(conversation.id, now())
            self._messages.record_inbound(
                conversation.id, message.message_id, message.sender, message.parts,
                message.text if self._settings.retain_bodies else None,
            )
        sends: list[str] = []
        if decision.relay is not None and conversation is not None and context.counterpart:
            relay = outbound.relay(message.message_id, conversation, context.counterpart,
                                   decision.relay, message.received_at)
            if self._messages.owe(relay):
                self._counters.incr("smsproxy.inbound.relayed")
            sends.append(relay.id)
        for reply in decision.replies:
            answer = outbound.reply(
                message.message_id, reply.kind, message.virtual_number, message.sender,
                reply.text, conversation.id if context.routed and conversation else None,
            )
            self._messages.owe(answer)
            sends.append(answer.id)
        return Carried(tuple(sends), decision.events)

    def record_late(self, part: LatePart) -> None:
        """A part that came after its message was relayed without it: into the audit trail
        (never relayed on its own, which would send a fragment out of context)."""
        conversation_id = self._routes.find(part.sender, part.virtual_number)
        if conversation_id is None:
            return
        self._messages.record_inbound(
            conversation_id, part.message_id, part.sender, 1, None,
            late_part_of=part.whole_message_id,
        )
        log.info("late part %d of %s recorded, not relayed", part.part, part.whole_message_id)
