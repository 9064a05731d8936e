"""What an inbound message leads to: a pipeline of small rules, one decision.

Each rule looks at what is known about a whole inbound message (`InboundContext`) and the
decision so far, and returns the decision it should become: relay this text, reply with that,
drop it for a reason, notify the marketplace. A rule that settles the matter marks the decision
final and the rules after it do not run. Rules do no I/O; `shared/inbound.py` gathers the
context and carries the decision out.

To add a rule: write a function `(InboundContext, Decision) -> Decision` here, test it alone,
and put it in `RULES` where it belongs in the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from shared import outbound
from shared.domain import Conversation, MessageKind, Participant
from shared.masking import mask_contacts, region_of
from shared.opt_outs import OptOut, ParticipantState
from shared.reassembly import Reassembled
from shared.settings import Settings


class DropReason(StrEnum):
    UNROUTED = "unrouted"  # no live route from the sender through this virtual number
    BINARY = "binary"  # octets (a ringtone, a WAP push...), which a text cannot carry
    KEYWORD = "keyword"  # STOP, START or HELP: answered, never relayed
    RECIPIENT_OPTED_OUT = "recipient_opted_out"  # the other side opted out of their number


class Event(StrEnum):
    """Events for the marketplace that an inbound message can cause."""

    OUT_OF_SESSION = "message.out_of_session"
    PARTICIPANT_OPTED_OUT = "participant.opted_out"
    PARTICIPANT_OPTED_IN = "participant.opted_in"


@dataclass(frozen=True, slots=True)
class InboundContext:
    """A whole inbound message and what the stores know about it."""

    message: Reassembled
    settings: Settings
    conversation: Conversation | None = None  # the live conversation its route leads to
    sender: Participant | None = None  # the participant who texted, in that conversation
    counterpart: Participant | None = None  # the one it would be relayed to
    # the sender opted out of the number they texted (known for a routed message, and for an
    # opt-in keyword without a route)
    sender_opted_out: bool = False
    # the counterpart's opt-out of their own proxy number, from which a relay would reach them
    recipient_opt_out: OptOut | None = None

    @property
    def routed(self) -> bool:
        return (
            self.conversation is not None
            and self.conversation.status.is_live
            and self.counterpart is not None
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A text back to the sender, from the virtual number they texted."""

    kind: MessageKind
    text: str
    # Sent once per this key (not per inbound message): the notice that the other side opted
    # out goes once per opt-out, however often its sender texts.
    once_per: str | None = None


@dataclass(frozen=True, slots=True)
class StateChange:
    """The sender's new opt-out state on the number they texted; shared/inbound.py sets it,
    once per message, and only the message that made the change sends what follows."""

    state: ParticipantState
    confirmation: Reply
    tell_counterpart: bool = False  # the other side of the conversation is told, once


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one inbound message."""

    relay: str | None  # the text to send the counterpart; None: nothing is relayed
    replies: tuple[Reply, ...] = ()
    dropped: DropReason | None = None
    events: tuple[Event, ...] = ()
    masked: int = 0  # how many contact details the relayed text had replaced (never which)
    state_change: StateChange | None = None
    final: bool = False

    def drop(
        self, reason: DropReason, *replies: Reply, events: tuple[Event, ...] = (),
        state_change: StateChange | None = None,
    ) -> Decision:
        """Relay nothing, for `reason`; no later rule runs."""
        return replace(
            self, relay=None, dropped=reason, replies=self.replies + replies,
            events=self.events + events, state_change=state_change or self.state_change,
            final=True,
        )


Rule = Callable[[InboundContext, Decision], Decision]


def answer_keywords(context: InboundContext, decision: Decision) -> Decision:
    """STOP opts the sender out of the number they texted, START back in, HELP is answered;
    none is relayed. Only the whole text counts ("stop please" is a text), in any case.

    STOP and START work with or without a live route: a person must be able to stop a number
    whose conversation ended (it may serve them again), and to undo that. START is a keyword
    only from someone opted out (it includes YES, an everyday answer to the other side). HELP
    is answered to participants only: to strangers it would be an auto-reply on demand.
    """
    word = context.message.text.strip().upper()
    if not word:
        return decision
    settings = context.settings
    if word in settings.opt_out_keywords:
        change = StateChange(ParticipantState.OPTED_OUT,
                             Reply(MessageKind.OPT_OUT, settings.opt_out_reply),
                             tell_counterpart=context.routed)
        return decision.drop(DropReason.KEYWORD, state_change=change)
    if word in settings.opt_in_keywords and context.sender_opted_out:
        change = StateChange(ParticipantState.OPTED_IN,
                             Reply(MessageKind.OPT_IN, settings.opt_in_reply))
        return decision.drop(DropReason.KEYWORD, state_change=change)
    if word in settings.help_keywords and context.routed:
        return decision.drop(DropReason.KEYWORD, Reply(MessageKind.HELP, settings.help_reply))
    return decision


def require_live_route(context: InboundContext, decision: Decision) -> Decision:
    """A text with no live route is never relayed; it may get the out-of-session reply."""
    if context.routed:
        return decision
    settings = context.settings
    replies = (
        (Reply(MessageKind.OUT_OF_SESSION, settings.out_of_session_reply),)
        if settings.out_of_session_reply else ()
    )
    events = (Event.OUT_OF_SESSION,) if settings.out_of_session_callback_url else ()
    return decision.drop(DropReason.UNROUTED, *replies, events=events)


def never_relay_binary(context: InboundContext, decision: Decision) -> Decision:
    """A binary message is recorded and counted, never relayed (as text it would be garbage)."""
    if not context.message.binary:
        return decision
    return decision.drop(DropReason.BINARY)


def withhold_from_opted_out(context: InboundContext, decision: Decision) -> Decision:
    """Nothing reaches a person from a number they opted out of; the sender is told why,
    once per opt-out (unless they opted out of their own number too)."""
    opt_out = context.recipient_opt_out
    if opt_out is None or decision.relay is None or context.counterpart is None:
        return decision
    if context.sender_opted_out:
        return decision.drop(DropReason.RECIPIENT_OPTED_OUT)
    notice = Reply(
        MessageKind.OPTED_OUT_NOTICE,
        outbound.opted_out_notice_text(
            context.settings.opted_out_notice_template, context.counterpart
        ),
        once_per=opt_out.message_id,
    )
    return decision.drop(DropReason.RECIPIENT_OPTED_OUT, notice)


def mask_contact_details(context: InboundContext, decision: Decision) -> Decision:
    """Phone numbers and e-mail addresses (the conversation's choice, else the deployment's)
    become the marker: two people cannot take the conversation off the platform by text."""
    if decision.relay is None:
        return decision
    conversation = context.conversation
    kinds = (
        conversation.mask if conversation is not None and conversation.mask is not None
        else context.settings.mask_kinds
    )
    if not kinds:
        return decision
    # national formats ("07911 123456") are read in the sender's own country
    region = (context.sender.country if context.sender else None) or region_of(
        context.message.sender
    )
    masked = mask_contacts(decision.relay, kinds, region, context.settings.mask_marker)
    if not masked.count:
        return decision
    return replace(decision, relay=masked.text, masked=decision.masked + masked.count)


def add_relay_prefix(context: InboundContext, decision: Decision) -> Decision:
    """The operator's prefix (SMSPROXY_RELAY_PREFIX) goes before every relayed text."""
    prefix = context.settings.relay_prefix
    if decision.relay is None or not prefix:
        return decision
    return replace(decision, relay=prefix + decision.relay)


RULES: tuple[Rule, ...] = (
    answer_keywords,
    require_live_route,
    never_relay_binary,
    withhold_from_opted_out,
    mask_contact_details,
    add_relay_prefix,
)


def decide(context: InboundContext, rules: Sequence[Rule] = RULES) -> Decision:
    """Run the rules in order, from "relay the text as it came", until one is final."""
    decision = Decision(relay=context.message.text)
    for rule in rules:
        decision = rule(context, decision)
        if decision.final:
            break
    return decision
