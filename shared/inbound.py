"""An inbound message from the route lookup to the sends it is owed.

`InboundHandler.context` gathers what the rules need (route, conversation, participants);
`shared/inbound_rules.py` decides; `carry_out` records the decision (the audit trail, the sends
owed, counters) and says what the caller must send and publish. Recording is idempotent per
message id, so a redelivered task carries the same decision out to the same effect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import redis

from shared import allowances, outbound
from shared.allowances import Allowances
from shared.blocked_numbers import BlockedNumbers
from shared.clock import now
from shared.conversation_store import ConversationStore
from shared.domain import MessageKind, OutboundSms
from shared.inbound_rules import (
    Decision,
    Event,
    InboundContext,
    StateChange,
    Suppressed,
    decide,
)
from shared.logging import bind_log_context
from shared.messages import MessageLog
from shared.metrics import Counters, HistogramBuffer
from shared.opt_outs import Change, OptOuts, ParticipantState
from shared.phone import mask
from shared.pool_inventory import PoolInventory
from shared.read_batch import ReadBatch
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
    # for the participant events: whose conversation, and which participant sent the message
    conversation_id: str | None = None
    sender_index: int = 0
    # The sends of `sends` this run recorded (relays, replies, notices), as recorded: their
    # sender need not read them back (a round trip). A run that found one recorded before (a
    # redelivery) leaves it out, and its send reads what is stored, which may have moved on.
    fresh: Mapping[str, OutboundSms] = field(default_factory=lambda: MappingProxyType({}))


class InboundHandler:
    """Looks up, decides and records; makes no Vonage call and publishes nothing itself."""

    def __init__(
        self,
        routes: RouteTable,
        conversations: ConversationStore,
        messages: MessageLog,
        counters: Counters,
        settings: Settings,
        opt_outs: OptOuts,
        inventory: PoolInventory | None = None,
        blocked: BlockedNumbers | None = None,
        allowance: Allowances | None = None,
        caps: RelayCaps | None = None,
        daily: DailySends | None = None,
        *,
        client: redis.Redis,
        tally: HistogramBuffer | None = None,
    ) -> None:
        # the stores' client (one Redis): their reads that follow the conversation's go in
        # one batch over it
        self._client = client
        # counts of the relay path, buffered in the process (a round trip each otherwise);
        # without one they are written as they happen
        self._tally = tally
        self._routes = routes
        self._conversations = conversations
        self._messages = messages
        self._counters = counters
        self._settings = settings
        self._opt_outs = opt_outs
        self._caps = caps
        self._daily = daily
        self._allowances = allowance
        self._inventory = inventory
        self._blocked = blocked

    def context(self, message: Reassembled) -> InboundContext:
        """The message with its conversation and participants, if a route leads anywhere."""
        conversation_id = self._routes.find(message.sender, message.virtual_number)
        conversation = self._conversations.get(conversation_id) if conversation_id else None
        bind_log_context(conversation_id=conversation_id)
        pairs: list[tuple[str, str]] = []
        if conversation is None:
            context = InboundContext(message, self._settings)
            # without a route the sender's state matters only to an opt-in keyword
            if message.text.strip().upper() in self._settings.opt_in_keywords:
                pairs.append((message.sender, message.virtual_number))
        else:
            sender = next(
                (p for p in conversation.participants if p.number == message.sender), None
            )
            counterpart = conversation.counterpart_of(message.sender)
            context = InboundContext(message, self._settings, conversation, sender, counterpart)
            pairs.append((message.sender, message.virtual_number))
            if counterpart is not None and counterpart.proxy_number:
                pairs.append((counterpart.number, counterpart.proxy_number))
        # The opt-out states, which ends are our own numbers and which are blocked: each
        # needs the conversation, none another's answer, so they are read in one round trip.
        batch = ReadBatch(self._client)
        states = self._opt_outs.queue_get_many(batch, pairs)
        ends = context.ends
        own = self._inventory.queue_owned(batch, *ends) if self._inventory is not None else None
        blocked = self._blocked.queue_blocked(batch, *ends) if self._blocked is not None else None
        batch.run()
        found = states.value
        context = replace(
            context,
            sender_opted_out=bool(found) and found[0] is not None,
            recipient_opt_out=found[1] if len(found) > 1 else None,
        )
        return self._screened(
            context,
            own.value if own is not None else frozenset(),
            frozenset(blocked.value) if blocked is not None else frozenset(),
        )

    def _is_keyword(self, text: str) -> bool:
        word = text.strip().upper()
        settings = self._settings
        return word in settings.opt_out_keywords or word in settings.opt_in_keywords \
            or word in settings.help_keywords

    def _screened(
        self, context: InboundContext, own: frozenset[str], blocked: frozenset[str]
    ) -> InboundContext:
        """The context with which of its ends are our own numbers, and which are blocked;
        for a routed message its verdict against the conversation's caps, for one without a
        route what the out-of-session reply depends on."""
        context = replace(
            context, own_numbers=own, blocked=blocked,
            daily_limit_reached=self._daily is not None and self._daily.reached(),
        )
        message = context.message
        if context.routed and context.conversation is not None:
            # dropped or answered whatever the caps say: it takes no relay from them
            if (own or blocked or message.binary or self._caps is None
                    or self._is_keyword(message.text)):
                return context
            return replace(context, cap=self._caps.verdict(
                context.conversation.id, message.message_id, message.sender))
        if not self._settings.out_of_session_reply:
            return context
        served = {*self._settings.pool_targets}
        if self._inventory is not None:
            served.update(self._inventory.countries())
        replied_for = (
            self._allowances.holder(allowances.out_of_session(message.sender))
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
        routed = conversation if context.routed else None
        replies = list(decision.replies)
        events = list(decision.events)
        sends: list[str] = []
        fresh: dict[str, OutboundSms] = {}

        def owe(send: OutboundSms) -> bool:
            """Record a send owed; whether this run recorded it (handed on as recorded)."""
            recorded = self._messages.owe(send)
            if recorded is not None:
                fresh[send.id] = recorded
            sends.append(send.id)
            return recorded is not None

        changed: ParticipantState | None = None
        if decision.state_change is not None and self._change_state(context, decision.state_change):
            changed = decision.state_change.state
            replies.append(decision.state_change.confirmation)
            if routed is not None:
                events.append(Event.PARTICIPANT_OPTED_OUT if changed is ParticipantState.OPTED_OUT
                              else Event.PARTICIPANT_OPTED_IN)
            # never to a counterpart who opted out of their number themselves
            if (decision.state_change.tell_counterpart and routed is not None
                    and context.counterpart and context.sender
                    and context.recipient_opt_out is None):
                notice = outbound.opted_out_notice(
                    routed.id, context.counterpart, message.message_id,
                    outbound.opted_out_notice_text(
                        self._settings.opted_out_notice_template, context.sender
                    ),
                )
                owe(notice)
        if routed is not None:
            if self._settings.extend_on_activity:
                self._conversations.extend(routed.id, now())
            recorded = self._messages.record_inbound(
                routed.id, message.message_id, message.sender, message.parts,
                message.text if self._settings.retain_bodies else None,
                masked=decision.masked, participant_state=changed,
                not_relayed=decision.dropped.value if decision.dropped else None,
            )
            if recorded and decision.masked:  # counted once, however often the task runs
                self._counters.incr("smsproxy.inbound.masked", decision.masked)
            if recorded and decision.truncated:
                self._counters.incr("smsproxy.inbound.truncated")
        if decision.relay is not None and conversation is not None and context.counterpart:
            relay = outbound.relay(message.message_id, conversation, context.counterpart,
                                   decision.relay, message.received_at)
            if owe(relay):  # counted once, however often the task runs
                self._count("smsproxy.inbound.relayed")
        suppressed = list(decision.suppressed)
        for reply in replies:
            if reply.kind is MessageKind.OUT_OF_SESSION and not self._may_answer(message):
                suppressed.append(Suppressed.REPEAT)  # another message took the allowance
                continue
            if reply.once_per is not None and routed is not None and context.sender:
                answer = outbound.opted_out_notice(
                    routed.id, context.sender, reply.once_per, reply.text
                )
            else:
                answer = outbound.reply(
                    message.message_id, reply.kind, message.virtual_number, message.sender,
                    reply.text, routed.id if routed is not None else None,
                )
            owe(answer)
        for reason in suppressed:
            if reason is Suppressed.DAILY_LIMIT:
                self._counters.incr("smsproxy.sends.non_essential_stopped")
            else:
                self._counters.incr(f"smsproxy.out_of_session.{reason.value}")
            log.info("reply to %s suppressed: %s", mask(message.sender), reason.value)
        sender_index = next(
            (i for i, p in enumerate(routed.participants) if p.number == message.sender), 0
        ) if routed is not None else 0
        return Carried(tuple(sends), tuple(events),
                       routed.id if routed is not None else None, sender_index,
                       MappingProxyType(fresh))

    def _count(self, name: str) -> None:
        if self._tally is None:
            self._counters.incr(name)
            return
        self._tally.incr(name)
        self._tally.flush_if_due()

    def _may_answer(self, message: Reassembled) -> bool:
        """Take the sender's out-of-session allowance for this message (atomic: two texts
        racing each other get one reply between them; the same message again keeps it)."""
        if self._allowances is None:
            return True
        return self._allowances.claim(
            allowances.out_of_session(message.sender), message.message_id,
            self._settings.out_of_session_reply_interval_seconds,
        )

    def _change_state(self, context: InboundContext, change: StateChange) -> bool:
        """Set the sender's state on the number they texted; True when this message made
        the change (on this run or an earlier one), so that what follows is owed, by ids that
        make owing it again harmless."""
        message = context.message
        result = self._opt_outs.change(
            message.sender, message.virtual_number, change.state, message.message_id
        )
        if result is Change.MADE:
            self._counters.incr(f"smsproxy.participants.{change.state.value}")
            log.info("%s %s on %s by %s", mask(message.sender), change.state.value,
                     mask(message.virtual_number), message.message_id)
        return result is not Change.NONE

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
