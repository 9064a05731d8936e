"""Conversation rules: opening (once per Idempotency-Key), establishing, closing, expiring."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Protocol

from shared import outbound
from shared.api_models import NewConversation
from shared.blocked_numbers import BlockedNumbers
from shared.clock import after, now
from shared.conversation_store import ConversationStore
from shared.domain import Conversation, ConversationStatus, Participant
from shared.idempotency import IdempotencyKeys
from shared.insight_cache import InsightCache
from shared.messages import MessageLog
from shared.metrics import ACTIVATION, Counters
from shared.pool_inventory import PoolInventory
from shared.routes import PoolExhausted, RouteTable
from shared.settings import Settings
from shared.vonage_gateway import VonageFailure, Vonages, port_of

# How long an Idempotency-Key stays bound to the conversation it created.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# A create that has not finished this long after its request fails with `create_timeout`:
# far past its Number Insight attempts and its retries through a Redis outage.
PENDING_DEADLINE_SECONDS = 900
_REFUSALS = {
    "own_number": "is one of this account's own numbers",
    "blocked": "is a blocked number",
}
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


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing a person did: the live conversations it closed (their `closed` events are
    owed), and how many conversations, message records and keys lost the person's data."""

    closed: tuple[Conversation, ...] = ()
    conversations: int = 0
    messages: int = 0
    keys: int = 0


class IdempotencyConflict(Exception):
    """The Idempotency-Key was bound to a request with a different body."""


class ParticipantRefused(Exception):
    """A participant may not be in a conversation: `index` names them, `problem` says why."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"participant {index + 1}: {problem}")
        self.index = index
        self.problem = problem


class NumberBuyer(Protocol):
    """Buys one number for a country on the fly (the pool keeper); True if the pool grew."""

    def buy_one(self, vonage: Vonages, country: str, seen_size: int) -> bool: ...


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
    blocked: BlockedNumbers | None = None

    def refusal(self, participants: tuple[Participant, ...]) -> tuple[int, str] | None:
        """Why a participant may not be in a conversation (index, reason), or None.

        One of the account's own numbers would make the proxy text itself (a loop by
        construction); a blocked number is refused by the operator's choice.
        """
        numbers = [p.number for p in participants]
        blocked = self.blocked.blocked(*numbers) if self.blocked is not None else set()
        for index, number in enumerate(numbers):
            if self.inventory.owns(number):
                return index, "own_number"
            if number in blocked:
                return index, "blocked"
        return None

    def open(
        self, new: NewConversation, created_at: float, idempotency: tuple[str, str] | None,
        client: str,
    ) -> Opened:
        """Store a requested conversation (pending) of `client`, once per (Idempotency-Key,
        body).

        `idempotency` is (the client's key, a fingerprint of the body). The conversation is
        stored before the key is bound: whichever concurrent request loses the race for the
        key then always finds the winner's conversation, and drops its own unpublished one.
        Raises IdempotencyConflict when the key was used with another body, and
        LiveConversationCap when the client holds SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS, and
        ParticipantRefused for one of the account's own numbers or a blocked number.
        """
        refused = self.refusal(new.participants)
        if refused is not None:
            index, reason = refused
            self.counters.incr(f"smsproxy.conversations.refused_{reason}")
            raise ParticipantRefused(index, _REFUSALS[reason])
        conversation = new.build(created_at, client)
        if idempotency is not None:
            # A retry of a create that got in must find it, even at the cap.
            found = self._bound(client, *idempotency)
            if found is not None:
                return Opened(found, new=False)
        self.store.add(conversation, self.settings.client_max_live_conversations)
        if idempotency is None:
            return Opened(conversation, new=True)
        key, fingerprint = idempotency
        for _ in range(2):
            earlier = self.idempotency.remember(
                client, key, fingerprint, conversation.id, IDEMPOTENCY_TTL_SECONDS
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
            self.idempotency.forget(client, key)
        return Opened(conversation, new=True)

    def _bound(self, client: str, key: str, fingerprint: str) -> Conversation | None:
        """The conversation an earlier request with this key created, if it still exists;
        IdempotencyConflict if that request had another body."""
        earlier = self.idempotency.bound(client, key)
        if earlier is None:
            return None
        if earlier[0] != fingerprint:
            raise IdempotencyConflict(key)
        return self.store.get(earlier[1])

    def abandon(
        self, conversation_id: str, client: str, idempotency_key: str | None, reason: str
    ) -> None:
        """Its create job could not be published: fail it, and free the key for a retry."""
        self.store.finish(conversation_id, ConversationStatus.FAILED, reason)
        if idempotency_key is not None:
            self.idempotency.forget(client, idempotency_key)

    def establish(
        self, conversation_id: str, vonage: Vonages, fan_out: Executor | None = None
    ) -> Established:
        """Validate numbers, allocate proxies and activate.

        `fan_out`, when given, runs one participant's Number Insight lookup beside the other's:
        its threads must each reach Vonage through a client of their own (the worker's
        per-thread ports), as the SDK's client is not safe across threads.

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
        refused = self.refusal(conversation.participants)
        if refused is not None:  # blocked (or bought by the pool) since the request
            return self._fail(conversation.id, refused[1])

        checked = self._check_numbers(conversation, vonage, fan_out)
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
        self, conversation: Conversation, vonage: Vonages, fan_out: Executor | None
    ) -> tuple[Participant, Participant] | Established:
        """Each participant with the country Number Insight gives, or the failed conversation.

        Both cached answers come in one round trip; the lookups still owed run side by side
        when `fan_out` is given (each on a thread with its own Vonage client), so a fresh pair
        waits for one provider round trip, not two. Every lookup is made before any failure is
        judged, and each success is remembered, so that a retry redoes only what failed.
        """
        numbers = [p.number for p in conversation.participants]
        countries: list[str | VonageFailure | None] = list(self.insights.countries(numbers))
        owed = [index for index, country in enumerate(countries) if country is None]
        if len(owed) < len(numbers):
            self.counters.incr("smsproxy.insight.cached", len(numbers) - len(owed))
        looked_up = self._look_up([numbers[i] for i in owed], vonage, fan_out)
        for index, looked in zip(owed, looked_up, strict=True):
            countries[index] = looked
        transient: VonageFailure | None = None
        for index, answer in enumerate(countries):
            if not isinstance(answer, VonageFailure):
                continue
            if not answer.transient:
                return self._fail(conversation.id, f"participant {index + 1}: invalid "
                                  f"number ({answer.reason})")
            if self.insights.failed_attempt(conversation.id, index) >= INSIGHT_MAX_ATTEMPTS:
                return self._fail(conversation.id, "number_insight_unavailable")
            transient = transient or answer
        if transient is not None:
            raise transient
        first, second = (replace(p, country=str(c))
                         for p, c in zip(conversation.participants, countries, strict=True))
        return first, second

    def _look_up(
        self, numbers: list[str], vonage: Vonages, fan_out: Executor | None
    ) -> list[str | VonageFailure]:
        """Each number's country from Vonage (remembered), or the failure its lookup met; the
        first on this thread, the others on `fan_out` meanwhile when given."""
        if fan_out is None or len(numbers) < 2:
            return [self._ask(number, vonage) for number in numbers]
        others = [fan_out.submit(self._ask, number, vonage) for number in numbers[1:]]
        first = self._ask(numbers[0], vonage)
        return [first, *(other.result() for other in others)]

    def _ask(self, msisdn: str, vonage: Vonages) -> str | VonageFailure:
        # any account may look a number up: the primary's does
        primary = self.settings.vonage_accounts.primary
        try:
            insight = port_of(vonage, primary.api_key if primary else "").basic_insight(msisdn)
        except VonageFailure as failure:
            return failure
        self.insights.remember(msisdn, insight.country)
        return insight.country

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
                expires_at=after(started, c.ttl_seconds),
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

    def _countries_for(self, participant: Participant) -> list[str]:
        """The participant's own country first; others only when fallback is allowed."""
        own = participant.country or ""
        if not self.settings.country_fallback:
            return [own]
        return [own, *(c for c in self.inventory.countries() if c != own)]

    def _allocate(
        self, conversation_id: str, first: Participant, second: Participant, vonage: Vonages
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

    def erase_participant(self, number: str, client: str) -> Erasure:
        """Erase a person from `client`'s conversations: close the live ones, then take their
        number and every body they sent or received out of each conversation, its messages,
        the pair memory and their cached lookup; their index goes once it lists nothing.

        Another client's conversations with the same person are left alone: each marketplace
        answers for its own. Safe to run again: a second run finds nothing and counts 0.
        """
        closed: list[Conversation] = []
        conversations = messages = keys = 0
        listed = self.store.is_listed(number)
        for conversation_id in self.store.of_person(number):
            conversation = self.store.get(conversation_id)
            if conversation is not None:
                if not self.store.owned_by(conversation, client):
                    continue
                if conversation.status.is_live:
                    ended = self.close(conversation_id)
                    if ended is not None:
                        closed.append(ended)
                other = conversation.counterpart_of(number)
                if other is not None:
                    keys += self.routes.forget_pair(number, other.number)
                messages += self.messages.redact(
                    conversation_id, number, outbound.intro_ids(conversation_id)
                )
            if self.store.redact(conversation_id, number) is not None:
                conversations += 1
        keys += self.insights.forget(number)
        if listed and not self.store.is_listed(number):
            keys += 1
        return Erasure(tuple(closed), conversations, messages, keys)

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
