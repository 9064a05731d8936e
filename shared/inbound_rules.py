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
from shared.phone import country_of, is_costly
from shared.reassembly import Reassembled
from shared.relay_caps import Cap, CapVerdict
from shared.settings import Settings
from shared.templates import render
from shared.vonage_gateway import is_gsm7, sms_parts

TRUNCATED_MARKER = "[…]"
TRUNCATED_MARKER_GSM7 = "(...)"  # brackets are GSM-7 extension characters: two septets each


class DropReason(StrEnum):
    UNROUTED = "unrouted"  # no live route from the sender through this virtual number
    BINARY = "binary"  # octets (a ringtone, a WAP push...), which a text cannot carry
    KEYWORD = "keyword"  # STOP, START or HELP: answered, never relayed
    RECIPIENT_OPTED_OUT = "recipient_opted_out"  # the other side opted out of their number
    OWN_NUMBER = "own_number"  # from (or to) one of the account's numbers: a loop
    BLOCKED = "blocked"  # from (or to) a blocked number
    RATE_CAPPED = "rate_capped"  # over the conversation's relay rate
    DAILY_CAPPED = "daily_capped"  # over the conversation's relays per 24 h


class Suppressed(StrEnum):
    """Why an automatic reply was not sent (each counted as smsproxy.out_of_session.<it>)."""

    REPEAT = "repeat"  # the sender already had one within the interval
    COUNTRY = "country_not_served"  # a country the pool does not serve
    COSTLY = "costly_number"  # premium-rate or shared-cost: the pumping target
    DAILY_LIMIT = "daily_limit"  # the account's daily send limit is reached


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
    # Which of the sender and the counterpart are the account's own numbers, and which are
    # blocked (msisdns).
    own_numbers: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    # Gathered for a text with no route, when an out-of-session reply is configured: the
    # countries the pool serves, and the message whose reply used the sender's allowance.
    served_countries: frozenset[str] = frozenset()
    replied_for: str | None = None
    # The message against its conversation's caps (routed messages only), and whether the
    # account's daily send limit is reached.
    cap: CapVerdict = CapVerdict()
    daily_limit_reached: bool = False

    @property
    def ends(self) -> tuple[str, ...]:
        """The sender and, when routed, the number the text would be relayed to."""
        if self.counterpart is None:
            return (self.message.sender,)
        return self.message.sender, self.counterpart.number

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
    suppressed: tuple[Suppressed, ...] = ()  # replies not sent, and why
    truncated: bool = False  # the relay was cut to SMSPROXY_MAX_RELAY_PARTS
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


def drop_own_numbers(context: InboundContext, decision: Decision) -> Decision:
    """Nothing from, or to, a number the account owns: never relayed, never answered (two of
    our numbers, or ours and an auto-responder, would otherwise answer each other for ever)."""
    if not context.own_numbers.intersection(context.ends):
        return decision
    return decision.drop(DropReason.OWN_NUMBER)


def drop_blocked(context: InboundContext, decision: Decision) -> Decision:
    """A blocked number's texts are never relayed or answered, and nothing is relayed to it."""
    if not context.blocked.intersection(context.ends):
        return decision
    return decision.drop(DropReason.BLOCKED)


def out_of_session_refusal(context: InboundContext) -> Suppressed | None:
    """Why the sender of a text with no route may not get the out-of-session reply, if so.

    A reply to strangers is what SMS pumping farms: so at most one per sender per
    SMSPROXY_OUT_OF_SESSION_REPLY_INTERVAL_SECONDS, only to the countries the pool serves (or
    SMSPROXY_OUT_OF_SESSION_REPLY_COUNTRIES), never to a premium-rate or shared-cost number.
    """
    sender = context.message.sender
    if is_costly(sender):
        return Suppressed.COSTLY
    allowed = context.served_countries | context.settings.out_of_session_reply_countries
    if "*" not in allowed and country_of(sender) not in allowed:
        return Suppressed.COUNTRY
    if context.replied_for not in (None, context.message.message_id):
        return Suppressed.REPEAT
    return None


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
    events = (Event.OUT_OF_SESSION,) if settings.out_of_session_callback_url else ()
    if not settings.out_of_session_reply:
        return decision.drop(DropReason.UNROUTED, events=events)
    refusal = out_of_session_refusal(context)
    if refusal is not None:
        dropped = decision.drop(DropReason.UNROUTED, events=events)
        return replace(dropped, suppressed=dropped.suppressed + (refusal,))
    reply = Reply(MessageKind.OUT_OF_SESSION, settings.out_of_session_reply)
    return decision.drop(DropReason.UNROUTED, reply, events=events)


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


_CAP_DROPS = {Cap.RATE: DropReason.RATE_CAPPED, Cap.DAILY: DropReason.DAILY_CAPPED}
_CAP_WINDOWS = {Cap.RATE: "a few minutes", Cap.DAILY: "24 hours"}


def cap_conversation_relays(context: InboundContext, decision: Decision) -> Decision:
    """A conversation over its relay rate or its daily cap relays nothing more; the sender is
    told once per window (SMSPROXY_CAP_NOTICE_TEMPLATE), and the trail records why."""
    over = context.cap.over
    if over is None:
        return decision
    notices = (
        (Reply(MessageKind.CAP_NOTICE,
               render(context.settings.cap_notice_template, "window", _CAP_WINDOWS[over])),)
        if context.cap.notify else ()
    )
    return decision.drop(_CAP_DROPS[over], *notices)


def cut_to_fit(text: str, max_parts: int) -> str:
    """`text` if it fits `max_parts` SMS parts, else as much of it as fits with a marker that
    says it was cut (a GSM-7 marker for a GSM-7 text, so as not to halve the room)."""
    if sms_parts(text) <= max_parts:
        return text
    marker = TRUNCATED_MARKER if not is_gsm7(text) else TRUNCATED_MARKER_GSM7
    low, high = 0, len(text)  # the longest prefix that fits, with the marker, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if sms_parts(text[:middle] + marker) <= max_parts:
            low = middle
        else:
            high = middle - 1
    return text[:low] + marker


def cap_relay_parts(context: InboundContext, decision: Decision) -> Decision:
    """A relay takes at most SMSPROXY_MAX_RELAY_PARTS parts (each billed): longer is cut."""
    if decision.relay is None:
        return decision
    cut = cut_to_fit(decision.relay, context.settings.max_relay_parts)
    return decision if cut == decision.relay else replace(decision, relay=cut, truncated=True)


def add_relay_prefix(context: InboundContext, decision: Decision) -> Decision:
    """The operator's prefix (SMSPROXY_RELAY_PREFIX) goes before every relayed text."""
    prefix = context.settings.relay_prefix
    if decision.relay is None or not prefix:
        return decision
    return replace(decision, relay=prefix + decision.relay)


RULES: tuple[Rule, ...] = (
    drop_own_numbers,
    drop_blocked,
    answer_keywords,
    require_live_route,
    never_relay_binary,
    withhold_from_opted_out,
    cap_conversation_relays,
    mask_contact_details,
    add_relay_prefix,
    cap_relay_parts,  # last: the prefix takes room too
)


# Sends the product can do without: they stop when the account's daily send limit is reached.
# Relays are the product; intros and number changes make a conversation usable at all; the
# answers to STOP, START and HELP are owed by carriers' rules.
NON_ESSENTIAL = frozenset({
    MessageKind.OUT_OF_SESSION, MessageKind.CAP_NOTICE, MessageKind.OPTED_OUT_NOTICE,
})


def stop_non_essential_sends(context: InboundContext, decision: Decision) -> Decision:
    """At the daily send limit (SMSPROXY_DAILY_SEND_LIMIT), automatic replies are not sent."""
    if not context.daily_limit_reached:
        return decision
    kept = tuple(r for r in decision.replies if r.kind not in NON_ESSENTIAL)
    if len(kept) == len(decision.replies):
        return decision
    stopped = (Suppressed.DAILY_LIMIT,) * (len(decision.replies) - len(kept))
    return replace(decision, replies=kept, suppressed=decision.suppressed + stopped)


# Run on every decision, final or not, after the rules.
GUARDS: tuple[Rule, ...] = (stop_non_essential_sends,)


def decide(
    context: InboundContext, rules: Sequence[Rule] = RULES, guards: Sequence[Rule] = GUARDS
) -> Decision:
    """Run the rules in order, from "relay the text as it came", until one is final; then
    the guards, whatever the rules decided."""
    decision = Decision(relay=context.message.text)
    for rule in rules:
        decision = rule(context, decision)
        if decision.final:
            break
    for guard in guards:
        decision = guard(context, decision)
    return decision
