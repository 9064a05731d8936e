"""An inbound message from the route lookup to the sends it is owed.

`InboundHandler.context` gathers what the rules need (route, conversation, participants);
`shared/inbound_rules.py` decides; `carry_out` records the decision (the audit trail, the sends
owed, counters) and says what the caller must send and publish. Recording is idempotent per
message id, so a redelivered task carries the same decision out to the same effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from shared import allowances, outbound
from shared.allowances import Allowances
from shared.blocked_numbers import BlockedNumbers
from shared.clock import now
from shared.conversation_store import ConversationStore
from shared.domain import MessageKind
from shared.inbound_rules import Decision, Event, InboundContext, Suppressed, decide
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.pool_inventory import PoolInventory
from shared.reassembly import LatePart, Reassembled
from shared.relay_caps import DailySends, RelayCaps
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
        inventory: PoolInventory | None = None,
        blocked: BlockedNumbers | None = None,
        allowance: Allowances | None = None,
        caps: RelayCaps | None = None,
        daily: DailySends | None = None,
    ) -> None:
        self._caps = caps
        self._daily = daily
        self._allowances = allowance
        self._inventory = inventory
        self._blocked = blocked
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
            return self._screened(InboundContext(message, self._settings))
        sender = next(
            (p for p in conversation.participants if p.number == message.sender), None
        )
        return self._screened(InboundContext(
            message, self._settings, conversation, sender,
            conversation.counterpart_of(message.sender),
        ))

    def _screened(self, context: InboundContext) -> InboundContext:
        """The context with which of its ends are our own numbers, and which are blocked."""
        ends = context.ends
        own = frozenset(n for n in ends if self._inventory is not None
                        and self._inventory.owns(n))
        blocked = frozenset(self._blocked.blocked(*ends)) if self._blocked is not None else None
        context = replace(
            context, own_numbers=own, blocked=blocked or frozenset(),
            daily_limit_reached=self._daily is not None and self._daily.reached(),
        )
        if context.routed and context.conversation is not None:
            if own or blocked or context.message.binary or self._caps is None:
                return context  # dropped whatever the caps say: it takes no relay from them
            return replace(context, cap=self._caps.verdict(
                context.conversation.id, context.message.message_id, context.message.sender))
        if not self._settings.out_of_session_reply:
            return context
        served = {*self._settings.pool_targets}
        if self._inventory is not None:
            served.update(self._inventory.countries())
        replied_for = (
            self._allowances.holder(allowances.out_of_session(context.message.sender))
            if self._allowances is not None else None
        )
        return replace(context, served_countries=frozenset(served), replied_for=replied_for)

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
                not_relayed=decision.dropped.value if decision.dropped else None,
            )
        sends: list[str] = []
        if decision.relay is not None and conversation is not None and context.counterpart:
            relay = outbound.relay(message.message_id, conversation, context.counterpart,
                                   decision.relay)
            if self._messages.owe(relay):
                self._counters.incr("smsproxy.inbound.relayed")
                if decision.truncated:
                    self._counters.incr("smsproxy.inbound.truncated")
            sends.append(relay.id)
        suppressed = list(decision.suppressed)
        for reply in decision.replies:
            if reply.kind is MessageKind.OUT_OF_SESSION and not self._may_answer(message):
                suppressed.append(Suppressed.REPEAT)  # another message took the allowance
                continue
            answer = outbound.reply(
                message.message_id, reply.kind, message.virtual_number, message.sender,
                reply.text, conversation.id if context.routed and conversation else None,
            )
            self._messages.owe(answer)
            sends.append(answer.id)
        for reason in suppressed:
            if reason is Suppressed.DAILY_LIMIT:
                self._counters.incr("smsproxy.sends.non_essential_stopped")
            else:
                self._counters.incr(f"smsproxy.out_of_session.{reason.value}")
            log.info("reply to %s suppressed: %s", mask(message.sender), reason.value)
        return Carried(tuple(sends), decision.events)

    def _may_answer(self, message: Reassembled) -> bool:
        """Take the sender's out-of-session allowance for this message (atomic: two texts
        racing each other get one reply between them; the same message again keeps it)."""
        if self._allowances is None:
            return True
        return self._allowances.claim(
            allowances.out_of_session(message.sender), message.message_id,
            self._settings.out_of_session_reply_interval_seconds,
        )

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
