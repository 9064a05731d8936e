"""Conversation rules: validating a create request, establishing, closing and expiring."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from shared.domain import Conversation, ConversationStatus, MessageKind, OutboundSms, Participant
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import InvalidNumber, mask, to_msisdn
from shared.settings import Settings
from shared.store import ConversationStore, PoolExhausted, now
from shared.vonage_gateway import VonageFailure, VonagePort

MAX_METADATA_BYTES = 4096
MAX_DISPLAY_NAME = 64
_CREATE_FIELDS = frozenset({"participants", "ttl_seconds", "callback_url", "metadata"})
_PARTICIPANT_FIELDS = frozenset({"number", "display_name"})


class RequestError(ValueError):
    """A client error in an API request; `field` names the offending part."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class NewConversation:
    """A validated create request."""

    participants: tuple[Participant, Participant]
    ttl_seconds: int
    callback_url: str | None
    metadata: Mapping[str, Any]

    def build(self, created_at: float) -> Conversation:
        return Conversation(
            id=uuid.uuid4().hex,
            participants=self.participants,
            status=ConversationStatus.PENDING,
            created_at=created_at,
            ttl_seconds=self.ttl_seconds,
            callback_url=self.callback_url,
            metadata=self.metadata,
        )


def parse_create_request(body: Any, settings: Settings) -> NewConversation:
    """Validate `POST /v1/conversations`; raise RequestError naming the first problem."""
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise RequestError(unknown[0], "is not a known field")
    raw_participants = body.get("participants")
    if not isinstance(raw_participants, list):
        raise RequestError("participants", "must be a list of two participants")
    if len(raw_participants) != 2:
        raise RequestError("participants", "must have exactly two participants")
    participants = tuple(_parse_participant(i, p) for i, p in enumerate(raw_participants))
    first, second = participants
    if first.number == second.number:
        raise RequestError("participants", "must be two different numbers")

    ttl = body.get("ttl_seconds", settings.default_ttl_seconds)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise RequestError("ttl_seconds", "must be a whole number of seconds")
    if not 60 <= ttl <= settings.max_ttl_seconds:
        raise RequestError("ttl_seconds", f"must be between 60 and {settings.max_ttl_seconds}")

    callback_url = body.get("callback_url")
    if callback_url is not None:
        if not isinstance(callback_url, str) or len(callback_url) > 2048:
            raise RequestError("callback_url", "must be an http(s) URL")
        parts = urlsplit(callback_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise RequestError("callback_url", "must be an http(s) URL")

    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise RequestError("metadata", "must be a JSON object")
    if len(_compact_json(metadata)) > MAX_METADATA_BYTES:
        raise RequestError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return NewConversation(
        participants=(first, second),
        ttl_seconds=ttl,
        callback_url=callback_url,
        metadata=metadata,
    )


def _parse_participant(index: int, raw: Any) -> Participant:
    where = f"participants[{index}]"
    if not isinstance(raw, dict):
        raise RequestError(where, "must be an object with a number")
    unknown = sorted(set(raw) - _PARTICIPANT_FIELDS)
    if unknown:
        raise RequestError(f"{where}.{unknown[0]}", "is not a known field")
    number = raw.get("number")
    if not isinstance(number, str) or len(number) > 32:
        raise RequestError(f"{where}.number", "must be a phone number in E.164 form")
    try:
        msisdn = to_msisdn(number)
    except InvalidNumber as exc:
        raise RequestError(f"{where}.number", str(exc)) from None
    name = raw.get("display_name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_DISPLAY_NAME):
        raise RequestError(f"{where}.display_name", f"must be 1 to {MAX_DISPLAY_NAME} characters")
    return Participant(number=msisdn, display_name=name)


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def intro_id(conversation_id: str, index: int) -> str:
    return f"intro-{conversation_id}-{index}"


@dataclass(frozen=True, slots=True)
class Conversations:
    """Establishing and ending conversations, given the store and the Vonage port."""

    store: ConversationStore
    log: MessageLog
    counters: Counters
    settings: Settings

    def establish(self, conversation_id: str, vonage: VonagePort) -> list[str]:
        """Validate numbers, allocate proxies and activate; returns the intro sends to enqueue.

        Safe to run again: an active conversation returns its intro ids (re-enqueuing a send
        is harmless), a finished one returns nothing. Transient Vonage failures propagate so
        that the task retries.
        """
        conversation = self.store.get(conversation_id)
        if conversation is None:
            return []
        if conversation.status is ConversationStatus.ACTIVE:
            return [intro_id(conversation.id, i) for i in range(2)]
        if conversation.status is not ConversationStatus.PENDING:
            return []

        checked: list[Participant] = []
        for index, participant in enumerate(conversation.participants):
            try:
                insight = vonage.basic_insight(participant.number)
            except VonageFailure as failure:
                if failure.transient:
                    raise
                self.store.finish(
                    conversation.id,
                    ConversationStatus.FAILED,
                    f"participant {index + 1}: invalid number ({failure.reason})",
                )
                self.counters.incr("smsproxy.conversations.failed")
                return []
            checked.append(replace(participant, country=insight.country))

        first, second = checked
        try:
            proxy_a, proxy_b = self.store.allocate(
                conversation.id,
                ((first.number, first.country or ""), (second.number, second.country or "")),
            )
        except PoolExhausted:
            self.store.finish(conversation.id, ConversationStatus.FAILED, "pool_exhausted")
            self.counters.incr("smsproxy.pool.exhausted")
            return []

        participants = (
            replace(first, proxy_number=proxy_a),
            replace(second, proxy_number=proxy_b),
        )
        started = now()
        active = self.store.transition(
            conversation.id,
            lambda c: c.with_status(
                ConversationStatus.ACTIVE,
                participants=participants,
                expires_at=started + c.ttl_seconds,
            )
            if c.status is ConversationStatus.PENDING
            else None,
        )
        if active is None:
            # Closed while we were allocating: give the numbers back.
            self.store.release(replace(conversation, participants=participants))
            return []
        self.counters.incr("smsproxy.conversations.active")
        return self._owe_intros(active)

    def _owe_intros(self, conversation: Conversation) -> list[str]:
        ids = []
        for index, participant in enumerate(conversation.participants):
            other = conversation.participants[1 - index]
            text = self.settings.intro_template.format_map(
                _Template(counterpart=other.display_name or "your contact")
            )
            message = OutboundSms(
                id=intro_id(conversation.id, index),
                conversation_id=conversation.id,
                kind=MessageKind.INTRO,
                sender=participant.proxy_number or "",
                recipient=participant.number,
                text=text,
            )
            self.log.owe(message)
            ids.append(message.id)
        return ids

    def close(self, conversation_id: str) -> Conversation | None:
        """End a live conversation now; None when it is unknown or already over."""
        closed = self.store.finish(conversation_id, ConversationStatus.CLOSED)
        if closed is not None:
            self.counters.incr("smsproxy.conversations.closed")
        return closed

    def expire_due(self, limit: int = 500) -> int:
        """End every live conversation past its expiry; returns how many were ended."""
        ended = 0
        for conversation_id in self.store.due_for_expiry(now(), limit):
            if self.store.finish(conversation_id, ConversationStatus.EXPIRED) is not None:
                ended += 1
        if ended:
            self.counters.incr("smsproxy.conversations.expired", ended)
        return ended


class _Template(dict[str, str]):
    """Leaves unknown placeholders in an operator's template as they are, instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def describe(conversation: Conversation) -> str:
    """A log-safe one-line description."""
    first, second = conversation.participants
    return f"{conversation.id} {mask(first.number)}<->{mask(second.number)} {conversation.status}"
