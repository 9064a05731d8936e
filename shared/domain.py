"""Domain types: conversations, participants, webhook payloads and messages."""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from shared.masking import ContactKind

# Redis keeps a small hash as a listpack (a few bytes of overhead per field) while every value
# is at most `hash-max-listpack-value` bytes (64 by default), and converts it to a hash table
# for good once one is longer.
LISTPACK_VALUE_BYTES = 64

# What stands in for a person's number (and body) in records once they were erased: never a
# number, so that no route, lookup or send can match it.
ERASED = "erased"


def new_conversation_id() -> str:
    """A new conversation's id: 96 random bits in 16 URL-safe characters (base64url).

    The id is public (the API, callbacks), so it must be unguessable; it is also repeated in
    most keys and index entries of a conversation, so it is no longer than that. Conversations
    created before this had 32 hex characters (uuid4().hex); both forms stay valid.
    """
    return secrets.token_urlsafe(12)


class ConversationStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"
    CLOSED = "closed"
    EXPIRED = "expired"

    @property
    def is_live(self) -> bool:
        """Pending and active conversations hold (or are about to hold) routes."""
        return self in {ConversationStatus.PENDING, ConversationStatus.ACTIVE}


class MessageKind(StrEnum):
    INTRO = "intro"
    RELAY = "relay"
    OUT_OF_SESSION = "out_of_session"
    NUMBER_CHANGE = "number_change"
    OPT_OUT = "opt_out"  # the confirmation of an opt-out keyword
    OPT_IN = "opt_in"
    HELP = "help"
    OPTED_OUT_NOTICE = "opted_out_notice"  # to the other side of an opt-out, once
    CAP_NOTICE = "cap_notice"


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Participant:
    """One side of a conversation; numbers are msisdns."""

    number: str
    proxy_number: str | None = None
    country: str | None = None
    display_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_empty({
            "number": self.number,
            "proxy_number": self.proxy_number,
            "country": self.country,
            "display_name": self.display_name,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Participant:
        return cls(
            number=data["number"],
            proxy_number=data.get("proxy_number"),
            country=data.get("country"),
            display_name=data.get("display_name"),
        )


@dataclass(frozen=True, slots=True)
class Conversation:
    """A masked conversation between exactly two participants."""

    id: str
    participants: tuple[Participant, Participant]
    status: ConversationStatus
    created_at: float
    ttl_seconds: int
    expires_at: float | None = None
    failure_reason: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    intro_text: str | None = None
    # The /v1 client that created it and alone may see it; None for conversations created
    # before clients had names (every client sees those).
    client: str | None = None
    # The contact details masked in its relayed texts; None (stored before the choice was
    # made per conversation): the deployment's SMSPROXY_MASK_KINDS.
    mask: frozenset[ContactKind] | None = None

    def visible_to(self, client: str, legacy_owner: str | None = None) -> bool:
        """Whether `client` may see it: its own, or one from before clients had names when
        `client` is their owner (Settings.legacy_owner)."""
        if self.client is None:
            return legacy_owner is not None and client == legacy_owner
        return self.client == client

    def counterpart_of(self, number: str) -> Participant | None:
        """The other side for a participant's real number, or None if it is not in this one."""
        first, second = self.participants
        if first.number == number:
            return second
        if second.number == number:
            return first
        return None

    def with_status(self, status: ConversationStatus, **changes: Any) -> Conversation:
        return replace(self, status=status, **changes)

    def to_json(self) -> str:
        # Absent means "none": every stored byte counts once per live conversation.
        return json.dumps(
            _without_empty({
                "id": self.id,
                "participants": [p.to_dict() for p in self.participants],
                "status": self.status.value,
                "created_at": self.created_at,
                "ttl_seconds": self.ttl_seconds,
                "expires_at": self.expires_at,
                "failure_reason": self.failure_reason,
                "callback_url": self.callback_url,
                "metadata": dict(self.metadata),
                "intro_text": self.intro_text,
                "client": self.client,
                "mask": sorted(self.mask) if self.mask is not None else None,
            }),
            separators=(",", ":"),
        )

    def to_fields(self) -> dict[str, str] | None:
        """The conversation as a flat Redis hash of short fields (absent means none), or None
        when a value is too long for Redis to keep the hash in its compact listpack encoding
        (as a hash table it would cost several times as much: to_json() then keeps it).

        The id is the key's, so it is not stored again.
        """
        fields: dict[str, str] = {
            "s": self.status.value,
            "c": _stamp(self.created_at),
            "t": str(self.ttl_seconds),
        }
        for side, participant in zip("ab", self.participants, strict=True):
            for name, value in zip(
                "npcd",
                (participant.number, participant.proxy_number, participant.country,
                 participant.display_name),
                strict=True,
            ):
                if value is not None:
                    fields[side + name] = value
        optional = {
            "e": _stamp(self.expires_at) if self.expires_at is not None else None,
            "r": self.failure_reason,
            "u": self.callback_url,
            "m": json.dumps(dict(self.metadata), separators=(",", ":")) if self.metadata else None,
            "i": self.intro_text,
            "l": self.client,
            "k": ",".join(sorted(self.mask)) if self.mask is not None else None,
        }
        fields.update({name: value for name, value in optional.items() if value is not None})
        if any(len(value.encode()) > LISTPACK_VALUE_BYTES for value in fields.values()):
            return None
        return fields

    @classmethod
    def from_fields(cls, conversation_id: str, fields: Mapping[str, str]) -> Conversation:
        """The conversation to_fields() stored under `conversation_id`."""
        first, second = (
            Participant(
                number=fields[side + "n"], proxy_number=fields.get(side + "p"),
                country=fields.get(side + "c"), display_name=fields.get(side + "d"),
            )
            for side in "ab"
        )
        mask = fields.get("k")
        return cls(
            id=conversation_id,
            participants=(first, second),
            status=ConversationStatus(fields["s"]),
            created_at=_time(fields["c"]),
            ttl_seconds=int(fields["t"]),
            expires_at=_time(fields["e"]) if "e" in fields else None,
            failure_reason=fields.get("r"),
            callback_url=fields.get("u"),
            metadata=json.loads(fields["m"]) if "m" in fields else {},
            intro_text=fields.get("i"),
            client=fields.get("l"),
            mask=(
                frozenset(ContactKind(k) for k in mask.split(",") if k) if mask is not None
                else None
            ),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Conversation:
        data = json.loads(raw)
        first, second = (Participant.from_dict(p) for p in data["participants"])
        return cls(
            id=data["id"],
            participants=(first, second),
            status=ConversationStatus(data["status"]),
            created_at=data["created_at"],
            ttl_seconds=data["ttl_seconds"],
            expires_at=data.get("expires_at"),
            failure_reason=data.get("failure_reason"),
            callback_url=data.get("callback_url"),
            metadata=data.get("metadata") or {},
            intro_text=data.get("intro_text"),
            client=data.get("client"),
            mask=frozenset(ContactKind(k) for k in data["mask"]) if "mask" in data else None,
        )


def _stamp(at: float) -> str:
    """A time for a record's hash: whole milliseconds when it has no finer digits (a listpack
    keeps such a number as an integer, 10 bytes instead of 16: docs/performance.md, section 4),
    else as Python prints the float (which always has a '.' or an 'e')."""
    millis = round(at * 1000)
    return str(millis) if millis / 1000 == at and millis >= 0 else repr(at)


def _time(value: str) -> float:
    """A time _stamp() wrote, or one written as seconds before it (a float's digits)."""
    return int(value) / 1000 if value.isdigit() else float(value)


def _without_empty(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and v != {}}


class WebhookFieldError(ValueError):
    """A webhook lacks a field or carries a malformed one; `field` names it."""

    def __init__(self, field_name: str, problem: str = "is required") -> None:
        super().__init__(f"{field_name} {problem}")
        self.field = field_name
        self.problem = problem


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise WebhookFieldError(name)
    return value


def _is_digits(value: str) -> bool:
    # str.isdigit() alone also takes "²" or "٣", which int() then refuses or misreads
    return value.isascii() and value.isdigit()


# Vonage's message ids are hex ("0A0000000123ABCD1") or UUIDs. An id becomes part of Redis keys
# and job names (`in:{id}`, `out:relay-{id}`, `seen:inbound:{id}`, the outbox's `inbound:{id}`),
# where a `:` could name another record's key (`out:relay-X:text` is relay-X's body).
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CLIENT_REF = re.compile(r"[A-Za-z0-9._-]{1,100}")  # Vonage's limit; every id we send fits


def _message_id(params: Mapping[str, str]) -> str:
    value = _required(params, "messageId")
    if len(value) > 64:
        raise WebhookFieldError("messageId", "is too long")
    if not _ID.fullmatch(value):
        raise WebhookFieldError(
            "messageId", "must be 1 to 64 ASCII letters, digits, '.', '_' or '-'"
        )
    return value


_STATUS = re.compile(r"[a-z_-]{1,32}")  # Vonage's are words: delivered, expired, failed, ...
_ERR_CODE = re.compile(r"[0-9]{1,8}")


def _receipt_status(params: Mapping[str, str]) -> str:
    value = _required(params, "status").lower()
    if not _STATUS.fullmatch(value):
        raise WebhookFieldError("status", "must be a word such as delivered or failed")
    return value


def _err_code(params: Mapping[str, str]) -> str:
    value = params.get("err-code", "").strip() or "0"
    if not _ERR_CODE.fullmatch(value):
        raise WebhookFieldError("err-code", "must be ASCII digits")
    return value


def _client_ref(params: Mapping[str, str]) -> str | None:
    """Our send's id, or None: a reference of another shape was not set by us (another
    application on the account may send with any `client-ref`), so the receipt is not ours."""
    value = params.get("client-ref") or None
    return value if value is not None and _CLIENT_REF.fullmatch(value) else None


def _digits(params: Mapping[str, str], name: str) -> str:
    value = _required(params, name).lstrip("+")
    if not _is_digits(value) or len(value) > 20:
        raise WebhookFieldError(name, "must be a phone number of digits")
    return value


class InboundType(StrEnum):
    """What an inbound SMS carries: GSM-7 or UCS-2 text, or octets (`data` and `udh`)."""

    TEXT = "text"
    UNICODE = "unicode"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """Which part of a multi-part message a webhook carries."""

    ref: str
    part: int
    total: int


def _optional_time(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


@dataclass(frozen=True, slots=True)
class InboundSms:
    """One inbound-SMS webhook, validated."""

    sender: str
    virtual_number: str
    message_id: str
    text: str  # empty for a binary message: its `data` and `udh` are never kept
    type: InboundType
    concat: ConcatInfo | None = None
    # when web received the webhook (Unix time): rides in the job, never a person's data, so
    # that the relay's latency can be measured from what the person did
    received_at: float | None = None

    @property
    def is_binary(self) -> bool:
        """Octets, not text: never to be relayed as a text message."""
        return self.type is InboundType.BINARY

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], received_at: float | None = None
    ) -> InboundSms:
        """Validate webhook parameters, raising WebhookFieldError naming the first bad field.

        `received_at`: when web received the webhook (web's own clock, whatever the parameters
        say); without it, the parameters' `received_at` (a task's payload), if any."""
        sender = _digits(params, "msisdn")
        virtual = _digits(params, "to")
        message_id = _message_id(params)
        concat = None
        if params.get("concat", "").lower() == "true":
            concat = ConcatInfo(
                ref=_required(params, "concat-ref"),
                part=_small_int(params, "concat-part"),
                total=_small_int(params, "concat-total"),
            )
            if concat.part > concat.total:
                raise WebhookFieldError("concat-part", "must not exceed concat-total")
        kind = _inbound_type(params)
        return cls(
            sender=sender,
            virtual_number=virtual,
            message_id=message_id,
            text="" if kind is InboundType.BINARY else params.get("text", ""),
            type=kind,
            concat=concat,
            received_at=(received_at if received_at is not None
                         else _optional_time(params.get("received_at"))),
        )

    def to_payload(self) -> dict[str, Any]:
        """The plain-JSON task payload."""
        payload: dict[str, Any] = {
            "msisdn": self.sender,
            "to": self.virtual_number,
            "messageId": self.message_id,
            "text": self.text,
            "type": self.type.value,
        }
        if self.received_at is not None:
            payload["received_at"] = f"{self.received_at:.3f}"
        if self.concat:
            payload.update(
                {
                    "concat": "true",
                    "concat-ref": self.concat.ref,
                    "concat-part": str(self.concat.part),
                    "concat-total": str(self.concat.total),
                }
            )
        return payload


def _inbound_type(params: Mapping[str, str]) -> InboundType:
    raw = params.get("type", "").strip().lower() or InboundType.TEXT.value
    try:
        return InboundType(raw)
    except ValueError:
        raise WebhookFieldError("type", "must be text, unicode or binary") from None


def _small_int(params: Mapping[str, str], name: str) -> int:
    raw = _required(params, name)
    if not _is_digits(raw) or not 1 <= int(raw) <= 255:
        raise WebhookFieldError(name, "must be a whole number from 1 to 255")
    return int(raw)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """One delivery-receipt webhook (one per message part)."""

    message_id: str
    status: str
    err_code: str
    client_ref: str | None
    recipient: str

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DeliveryReceipt:
        message_id = _message_id(params)
        return cls(
            message_id=message_id,
            status=_receipt_status(params),
            err_code=_err_code(params),
            client_ref=_client_ref(params),
            recipient=_digits(params, "msisdn"),
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "status": self.status,
            "err-code": self.err_code,
            "client-ref": self.client_ref,
            "msisdn": self.recipient,
        }


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """A send we owe: stored under a deterministic id so that re-enqueuing it is harmless."""

    id: str
    conversation_id: str | None
    kind: MessageKind
    sender: str
    recipient: str
    text: str
    created_at: float = 0.0
    # when web received the webhook this send answers (relays only): for the relay latency
    origin_at: float | None = None
