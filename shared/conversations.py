"""Conversation rules: opening (once per Idempotency-Key), establishing, closing, expiring."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from shared import outbound
from shared.api_models import NewConversation
from shared.clock import now
from shared.conversation_store import ConversationStore
from shared.domain import Conversation, ConversationStatus, Participant
from shared.idempotency import IdempotencyKeys
from shared.insight_cache import InsightCache
from shared.messages import MessageLog
from shared.metrics import ACTIVATION, Counters
from shared.pool_inventory import PoolInventory
from shared.routes import PoolExhausted, RouteTable
from shared.settings import Settings
from shared.vonage_gateway import VonageFailure, VonagePort

# How long an Idempotency-Key stays bound to the conversation it created.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# A create that has not finished this long after its request fails with `create_timeout`:
# far past its Number Insight attempts and its retries through a Redis outage.
PENDING_DEADLINE_SECONDS = 900
# Transient failures one participant's Number Insight lookup may meet before the create fails.
INSIGHT_MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Established:
    """What establishing did: the conversation as it now is, whether this run changed its
    status (so that exactly one run reports the change), and the intro sends to enqueue."""

    conversation: Conversation | None
    changed: bool = False
    intro_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Opened:
    """A create request's conversation; `new` when this request stored it (and so must have
    its create job published), False when an earlier request with the same key did."""

    conversation: Conversation
    new: bool


class IdempotencyConflict(Exception):
    """The Idempotency-Key was bound to a request with a different body."""


class NumberBuyer(Protocol):
    """Buys one number for a country on the fly (the pool keeper); True if the pool grew."""

    def buy_one(self, vonage: VonagePort, country: str, seen_size: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Conversations:
    """Establishing and ending conversations, given the store and the Vonage port."""

    store: ConversationStore
    routes: RouteTable
    inventory: PoolInventory
    messages: MessageLog
    counters: Counters
    settings: Settings
    insights: InsightCache
    idempotency: IdempotencyKeys
    buyer: NumberBuyer | None = None

    def open(
        self, new: NewConversation, created_at: float, idempotency: tuple[str, str] | None
    ) -> Opened:
        """Store a requested conversation (pending), once per (Idempotency-Key, body).

        `idempotency` is (the client's key, a fingerprint of the body). The conversation is
        stored before the key is bound: whichever concurrent request loses the race for the
        key then always finds the winner's conversation, and drops its own unpublished one.
        Raises IdempotencyConflict when the key was used with another body.
        """
        conversation = new.build(created_at)
        self.store.add(conversation)
        if idempotency is None:
            return Opened(conversation, new=True)
        key, fingerprint = idempotency
        for _ in range(2):
            earlier = self.idempotency.remember(
                key, fingerprint, conversation.id, IDEMPOTENCY_TTL_SECONDS
            )
            if earlier is None:
                return Opened(conversation, new=True)
            if earlier[0] != fingerprint:
                self.store.discard(conversation)
                raise IdempotencyConflict(key)
            existing = self.store.get(earlier[1])
            if existing is not None:
                self.store.discard(conversation)
                return Opened(existing, new=False)
            # bound to a conversation that aged out: the key is free again
            self.idempotency.forget(key)
        return Opened(conversation, new=True)

    def abandon(self, conversation_id: str, idempotency_key: str | None, reason: str) -> None:
        """Its create job could not be published: fail it, and free the key for a retry."""
        self.store.finish(conversation_id, ConversationStatus.FAILED, reason)
        if idempotency_key is not None:
            self.idempotency.forget(idempotency_key)

    def establish(self, conversation_id: str, vonage: VonagePort) -> Established:
        """Validate numbers, allocate proxies and activate.

        Safe to run again: an active conversation returns its intro ids (re-enqueuing a send
        is harmless), a finished one nothing. A transient Vonage failure propagates so that the
        task retries, until that participant's lookup has used INSIGHT_MAX_ATTEMPTS; then the
        conversation fails with `number_insight_unavailable`.
        """
        conversation = self.store.get(conversation_id)
        if conversation is None:
            return Established(None)
        if conversation.status is ConversationStatus.ACTIVE:
            return Established(conversation, intro_ids=self._intro_ids(conversation))
        if conversation.status is not ConversationStatus.PENDING:
            return Established(conversation)

        checked = self._check_numbers(conversation, vonage)
        if isinstance(checked, Established):
            return checked
        first, second = checked
        try:
            proxy_a, proxy_b = self._allocate(conversation.id, first, second, vonage)
        except PoolExhausted:
            self.counters.incr("smsproxy.pool.exhausted")
            return self._fail(conversation.id, "pool_exhausted")
        return self._activate(
            conversation,
            (replace(first, proxy_number=proxy_a), replace(second, proxy_number=proxy_b)),
        )

    def _check_numbers(
        self, conversation: Conversation, vonage: VonagePort
    ) -> tuple[Participant, Participant] | Established:
        """Each participant with the country Number Insight gives, or the failed conversation."""
        checked: list[Participant] = []
        for index, participant in enumerate(conversation.participants):
            try:
                country = self._country_of(participant.number, vonage)
            except VonageFailure as failure:
                if not failure.transient:
                    return self._fail(conversation.id, f"participant {index + 1}: invalid "
                                      f"number ({failure.reason})")
                if self.insights.failed_attempt(conversation.id, index) >= INSIGHT_MAX_ATTEMPTS:
                    return self._fail(conversation.id, "number_insight_unavailable")
                raise
            checked.append(replace(participant, country=country))
        first, second = checked
        return first, second

    def _activate(
        self, conversation: Conversation, participants: tuple[Participant, Participant]
    ) -> Established:
        """Pending to active with its proxies, and the intros owed; unless it was closed."""
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
            self.routes.release(replace(conversation, participants=participants))
            return Established(self.store.get(conversation.id))
        self.counters.incr("smsproxy.conversations.active")
        self.counters.observe(ACTIVATION, max(0.0, started - conversation.created_at))
        self._owe_intros(active)
        return Established(active, changed=True, intro_ids=self._intro_ids(active))

    def _country_of(self, msisdn: str, vonage: VonagePort) -> str:
        """The number's country: remembered from an earlier lookup, or asked of Vonage."""
        country = self.insights.country(msisdn)
        if country is not None:
            self.counters.incr("smsproxy.insight.cached")
            return country
        insight = vonage.basic_insight(msisdn)
        self.insights.remember(msisdn, insight.country)
        return insight.country

    def _countries_for(self, participant: Participant) -> list[str]:
        """The participant's own country first; others only when fallback is allowed."""
        own = participant.country or ""
        if not self.settings.country_fallback:
            return [own]
        return [own, *(c for c in self.inventory.countries() if c != own)]

    def _allocate(
        self, conversation_id: str, first: Participant, second: Participant, vonage: VonagePort
    ) -> tuple[str, str]:
        request = (
            (first.number, self._countries_for(first)),
            (second.number, self._countries_for(second)),
        )
        # Each participant may need one bought number; a third failure is final.
        for _ in range(3):
            seen = {c: self.inventory.size(c) for c in {first.country, second.country} if c}
            try:
                return self.routes.allocate(conversation_id, request)
            except PoolExhausted as short:
                country = (first, second)[short.index].country
                if (
                    not self.settings.buy_on_demand
                    or self.buyer is None
                    or not country
                    or not self.buyer.buy_one(vonage, country, seen[country])
                ):
                    raise
        return self.routes.allocate(conversation_id, request)

    def _fail(self, conversation_id: str, reason: str) -> Established:
        failed = self.store.finish(conversation_id, ConversationStatus.FAILED, reason)
        self.counters.incr("smsproxy.conversations.failed")
        return Established(failed or self.store.get(conversation_id), changed=failed is not None)

    @staticmethod
    def _intro_ids(conversation: Conversation) -> tuple[str, ...]:
        return outbound.intro_ids(conversation.id)

    def _owe_intros(self, conversation: Conversation) -> None:
        template = conversation.intro_text or self.settings.intro_template
        for index in range(2):
            # the trail derives intro ids itself, so they stay out of its list
            self.messages.owe(outbound.intro(conversation, index, template), in_trail=False)

    def close(self, conversation_id: str) -> Conversation | None:
        """End a live conversation now; None when it is unknown or already over."""
        closed = self.store.finish(conversation_id, ConversationStatus.CLOSED)
        if closed is not None:
            self.counters.incr("smsproxy.conversations.closed")
        return closed

    def fail_overdue(self, at: float, limit: int = 500) -> list[Conversation]:
        """Fail every conversation still pending PENDING_DEADLINE_SECONDS after its request
        (its create job was lost for good, or keeps failing): none stays pending forever."""
        failed = []
        for conversation_id in self.store.pending_since(at - PENDING_DEADLINE_SECONDS, limit):
            finished = self.store.finish(
                conversation_id, ConversationStatus.FAILED, "create_timeout"
            )
            if finished is not None:
                failed.append(finished)
        if failed:
            self.counters.incr("smsproxy.conversations.failed", len(failed))
        return failed

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
