"""Every text the proxy sends, composed in one place: relays, intros, replies, number changes.

Each gets an id derived from what caused it (the inbound message, the conversation and side,
the lost number), so that owing it twice is harmless: the record is written once per id.
"""

from __future__ import annotations

from shared.domain import Conversation, MessageKind, OutboundSms, Participant
from shared.phone import to_e164
from shared.templates import render

DEFAULT_COUNTERPART_NAME = "your contact"


def intro_id(conversation_id: str, index: int) -> str:
    return f"intro-{conversation_id}-{index}"


def intro_ids(conversation_id: str) -> tuple[str, str]:
    """Both sides' intro ids: the audit trail derives them instead of storing them."""
    return intro_id(conversation_id, 0), intro_id(conversation_id, 1)


def relay(
    message_id: str, conversation: Conversation, counterpart: Participant, text: str,
    received_at: float | None = None,
) -> OutboundSms:
    """An inbound message's text on its way to the other side, from that side's proxy."""
    return OutboundSms(
        id=f"relay-{message_id}",
        conversation_id=conversation.id,
        kind=MessageKind.RELAY,
        sender=counterpart.proxy_number or "",
        recipient=counterpart.number,
        text=text,
        origin_at=received_at,
    )


def reply(
    message_id: str, kind: MessageKind, virtual_number: str, sender: str, text: str,
    conversation_id: str | None = None,
) -> OutboundSms:
    """An answer to whoever texted `virtual_number`, from that same number."""
    return OutboundSms(
        id=f"{_REPLY_PREFIX[kind]}-{message_id}",
        conversation_id=conversation_id,
        kind=kind,
        sender=virtual_number,
        recipient=sender,
        text=text,
    )


_REPLY_PREFIX = {
    MessageKind.OUT_OF_SESSION: "oos",
    MessageKind.OPT_OUT: "optout",
    MessageKind.OPT_IN: "optin",
    MessageKind.HELP: "help",
    MessageKind.CAP_NOTICE: "capped",
}


def opted_out_notice_text(template: str, opted_out: Participant) -> str:
    """What the other side of an opt-out is told, naming who opted out."""
    return render(template, "counterpart", opted_out.display_name or DEFAULT_COUNTERPART_NAME)


def opted_out_notice(
    conversation_id: str, recipient: Participant, opt_out_id: str, text: str
) -> OutboundSms:
    """Tells `recipient` that the other side opted out, from `recipient`'s proxy. Its id is
    per conversation and opt-out (the message that made it): however often it is owed, at the
    opt-out or at each of `recipient`'s texts after it, it goes once."""
    return OutboundSms(
        id=f"optnotice-{conversation_id}-{opt_out_id}",
        conversation_id=conversation_id,
        kind=MessageKind.OPTED_OUT_NOTICE,
        sender=recipient.proxy_number or "",
        recipient=recipient.number,
        text=text,
    )


def intro(conversation: Conversation, index: int, template: str) -> OutboundSms:
    """The intro to participant `index`: whom they are connected with, from their proxy."""
    participant = conversation.participants[index]
    other = conversation.participants[1 - index]
    name = other.display_name or DEFAULT_COUNTERPART_NAME
    text = render(template, "counterpart", name)
    return OutboundSms(
        id=intro_id(conversation.id, index),
        conversation_id=conversation.id,
        kind=MessageKind.INTRO,
        sender=participant.proxy_number or "",
        recipient=participant.number,
        text=text,
    )


def number_change(
    conversation: Conversation, index: int, lost: str, moved_to: str, template: str
) -> OutboundSms:
    """Tells participant `index` that their proxy moved from `lost` to `moved_to`."""
    return OutboundSms(
        id=f"renumber-{conversation.id}-{index}-{lost}",
        conversation_id=conversation.id,
        kind=MessageKind.NUMBER_CHANGE,
        sender=moved_to,
        recipient=conversation.participants[index].number,
        text=render(template, "number", to_e164(moved_to)),
    )

