"""Conversation rules: establishing, closing and expiring."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from shared.domain import Conversation, ConversationStatus, MessageKind, OutboundSms, Participant
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.settings import Settings
from shared.store import ConversationStore, PoolExhausted, now
from shared.vonage_gateway import VonageFailure, VonagePort


def intro_id(conversation_id: str, index: int) -> str:
    return f"intro-{conversation_id}-{index}"


@dataclass(frozen=True, slots=True)
class Established:
    """What establishing did: the conversation as it now is, whether this run changed its
    status (so that exactly one run reports the change), and the intro sends to enqueue."""

    conversation: Conversation | None
    changed: bool = False
    intro_ids: tuple[str, ...] = ()


class NumberBuyer(Protocol):
    """Buys one number for a country on the fly (the pool keeper); True if the pool grew."""

    def buy_one(self, vonage: VonagePort, country: str, seen_size: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Conversations:
    """Establishing and ending conversations, given the store and the Vonage port."""

    store: ConversationStore
    log: MessageLog
    counters: Counters
    settings: Settings
    buyer: NumberBuyer | None = None

    def establish(self, conversation_id: str, vonage: VonagePort) -> Established:
        """Validate numbers, allocate proxies and activate.

        Safe to run again: an active conversation returns its intro ids (re-enqueuing a send
        is harmless), a finished one nothing. Transient Vonage failures propagate so that the
        task retries.
        """
        conversation = self.store.get(conversation_id)
        if conversation is None:
            return Established(None)
        if conversation.status is ConversationStatus.ACTIVE:
            return Established(conversation, intro_ids=self._intro_ids(conversation))
        if conversation.status is not ConversationStatus.PENDING:
            return Established(conversation)

        checked: list[Participant] = []
        for index, participant in enumerate(conversation.participants):
            try:
                insight = vonage.basic_insight(participant.number)
            except VonageFailure as failure:
                if failure.transient:
                    raise
                return self._fail(
                    conversation.id, f"participant {index + 1}: invalid number ({failure.reason})"
                )
            checked.append(replace(participant, country=insight.country))

        first, second = checked
        try:
            proxy_a, proxy_b = self._allocate(conversation.id, first, second, vonage)
        except PoolExhausted:
            self.counters.incr("smsproxy.pool.exhausted")
            return self._fail(conversation.id, "pool_exhausted")

        participants = (replace(first, proxy_number=proxy_a), replace(second, proxy_number=proxy_b))
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
            return Established(self.store.get(conversation.id))
        self.counters.incr("smsproxy.conversations.active")
        self._owe_intros(active)
        return Established(active, changed=True, intro_ids=self._intro_ids(active))

    def _countries_for(self, participant: Participant) -> list[str]:
        """The participant's own country first; others only when fallback is allowed."""
        own = participant.country or ""
        if not self.settings.country_fallback:
            return [own]
        return [own, *(c for c in self.store.pool_countries() if c != own)]

    def _allocate(
        self, conversation_id: str, first: Participant, second: Participant, vonage: VonagePort
    ) -> tuple[str, str]:
        request = (
            (first.number, self._countries_for(first)),
            (second.number, self._countries_for(second)),
        )
        # Each participant may need one bought number; a third failure is final.
        for _ in range(3):
            seen = {c: self.store.pool_size(c) for c in {first.country, second.country} if c}
            try:
                return self.store.allocate(conversation_id, request)
            except PoolExhausted as short:
                country = (first, second)[short.index].country
                if (
                    not self.settings.buy_on_demand
                    or self.buyer is None
                    or not country
                    or not self.buyer.buy_one(vonage, country, seen[country])
                ):
                    raise
        return self.store.allocate(conversation_id, request)

    def _fail(self, conversation_id: str, reason: str) -> Established:
        failed = self.store.finish(conversation_id, ConversationStatus.FAILED, reason)
        self.counters.incr("smsproxy.conversations.failed")
        return Established(failed or self.store.get(conversation_id), changed=failed is not None)

    @staticmethod
    def _intro_ids(conversation: Conversation) -> tuple[str, ...]:
        return tuple(intro_id(conversation.id, i) for i in range(2))

    def _owe_intros(self, conversation: Conversation) -> None:
        template = conversation.intro_text or self.settings.intro_template
        for index, participant in enumerate(conversation.participants):
            other = conversation.participants[1 - index]
            text = template.format_map(
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
            self.log.owe(message, in_trail=False)  # the trail derives intro ids itself

    def close(self, conversation_id: str) -> Conversation | None:
        """End a live conversation now; None when it is unknown or already over."""
        closed = self.store.finish(conversation_id, ConversationStatus.CLOSED)
        if closed is not None:
            self.counters.incr("smsproxy.conversations.closed")
        return closed

    def expire_due(self, limit: int = 500) -> list[Conversation]:
        """End every live conversation past its expiry; returns those this call ended."""
        ended = []
        for conversation_id in self.store.due_for_expiry(now(), limit):
            expired = self.store.finish(conversation_id, ConversationStatus.EXPIRED)
            if expired is not None:
                ended.append(expired)
        if ended:
            self.counters.incr("smsproxy.conversations.expired", len(ended))
        return ended


class _Template(dict[str, str]):
    """Leaves unknown placeholders in an operator's template as they are, instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def describe(conversation: Conversation) -> str:
    """A log-safe one-line description."""
    first, second = conversation.participants
    return f"{conversation.id} {mask(first.number)}<->{mask(second.number)} {conversation.status}"
