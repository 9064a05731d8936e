"""Conversation records in Redis: the record itself, the listing indexes, the expiry index.

A conversation is live while pending or active. Pending ones are indexed by creation time
(`pending`), active ones by expiry (`expiry`); a finished one leaves both and stays readable
for FINISHED_RETENTION_SECONDS. Finishing also frees its routes (shared/routes.py), in the
same call, so that no caller can end a conversation and forget its numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import redis

from shared.domain import Conversation, ConversationStatus
from shared.keys import Keys
from shared.routes import RouteTable

# A finished conversation stays readable (API, audit) this long, then Redis drops it.
FINISHED_RETENTION_SECONDS = 30 * 24 * 3600


class ConversationStore:
    """Conversations and their indexes; takes its Redis client in, never builds one."""

    def __init__(
        self, client: redis.Redis, routes: RouteTable, keys: Keys | None = None
    ) -> None:
        self._redis = client
        self._routes = routes
        self._keys = keys or Keys()

    def add(self, conversation: Conversation) -> None:
        """Store a new conversation (pending) and index it for listing."""
        pipe = self._redis.pipeline()
        pipe.set(self._keys.conversation(conversation.id), conversation.to_json())
        entry = {conversation.id: conversation.created_at}
        pipe.zadd(self._keys.conversations(), entry)
        pipe.zadd(self._keys.pending_conversations(), entry)
        for participant in conversation.participants:
            pipe.zadd(self._keys.person_conversations(participant.number), entry)
        pipe.execute()

    def discard(self, conversation: Conversation) -> None:
        """Remove a pending conversation that was never published (a lost idempotency race)."""
        pipe = self._redis.pipeline()
        pipe.delete(self._keys.conversation(conversation.id))
        pipe.zrem(self._keys.conversations(), conversation.id)
        pipe.zrem(self._keys.pending_conversations(), conversation.id)
        for participant in conversation.participants:
            pipe.zrem(self._keys.person_conversations(participant.number), conversation.id)
        pipe.execute()

    def page(
        self,
        *,
        status: ConversationStatus | None = None,
        participant: str | None = None,
        cursor: tuple[float, str] | None = None,
        limit: int = 50,
        scan_budget: int = 1000,
    ) -> tuple[list[Conversation], tuple[float, str] | None]:
        """Newest first, filtered; returns a page and the cursor after its last item.

        The cursor is (created_at, id) of the last item, so that items created meanwhile never
        shift a page. A page may hold fewer than `limit` items when filtering skipped many
        (bounded by `scan_budget`); the next cursor continues from where the scan stopped.
        """
        index = (
            self._keys.person_conversations(participant) if participant
            else self._keys.conversations()
        )
        found: list[Conversation] = []
        high: float | str = "+inf" if cursor is None else cursor[0]
        last: tuple[float, str] | None = cursor
        scanned = 0
        while len(found) < limit and scanned < scan_budget:
            batch = self._redis.zrevrangebyscore(
                index, high, "-inf", start=0, num=min(200, limit + 50), withscores=True
            )
            candidates = [(str(item[0]), float(item[1])) for item in batch]
            if last is not None:
                # Redis orders equal scores by id, descending here: skip what is already covered
                before = last
                candidates = [
                    (i, sc) for i, sc in candidates
                    if sc < before[0] or (sc == before[0] and i < before[1])
                ]
            if not candidates:
                return found, None
            raws = self._redis.mget([self._keys.conversation(i) for i, _ in candidates])
            for (conversation_id, score), raw in zip(candidates, raws, strict=True):
                scanned += 1
                last = (score, conversation_id)
                if raw is None:
                    self._redis.zrem(index, conversation_id)  # finished and aged out
                    continue
                conversation = Conversation.from_json(raw)
                if status is None or conversation.status is status:
                    found.append(conversation)
                    if len(found) == limit:
                        break
            high = last[0] if last else high
        return found, last

    def get(self, conversation_id: str) -> Conversation | None:
        raw = self._redis.get(self._keys.conversation(conversation_id))
        return Conversation.from_json(raw) if raw else None

    def transition(
        self, conversation_id: str, change: Callable[[Conversation], Conversation | None]
    ) -> Conversation | None:
        """Apply `change` to the stored conversation atomically (optimistic, retried on races).

        `change` returns the new state or None to leave it as it is; the new state is returned.
        """
        key = self._keys.conversation(conversation_id)
        while True:
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    changed = change(Conversation.from_json(raw))
                    if changed is None:
                        return None
                    pipe.multi()
                    pipe.set(key, changed.to_json())
                    if not changed.status.is_live:
                        pipe.expire(key, FINISHED_RETENTION_SECONDS)
                    if changed.status.is_live and changed.expires_at is not None:
                        pipe.zadd(self._keys.expiry(), {changed.id: changed.expires_at})
                    else:
                        pipe.zrem(self._keys.expiry(), changed.id)
                    if changed.status is not ConversationStatus.PENDING:
                        pipe.zrem(self._keys.pending_conversations(), changed.id)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def extend(self, conversation_id: str, at: float) -> Conversation | None:
        """Push a live conversation's expiry to `at` + its TTL (never earlier than it was)."""
        def later(c: Conversation) -> Conversation | None:
            if c.status is not ConversationStatus.ACTIVE or c.expires_at is None:
                return None
            wanted = at + c.ttl_seconds
            return c.with_status(c.status, expires_at=wanted) if wanted > c.expires_at else None

        return self.transition(conversation_id, later)

    def due_for_expiry(self, now: float, limit: int = 500) -> list[str]:
        """Ids of live conversations whose expiry has passed."""
        ids = self._redis.zrangebyscore(self._keys.expiry(), "-inf", now, start=0, num=limit)
        return [str(i) for i in ids]

    def pending_since(self, before: float, limit: int = 500) -> list[str]:
        """Ids of conversations still pending that were created before `before`."""
        ids = self._redis.zrangebyscore(
            self._keys.pending_conversations(), "-inf", before, start=0, num=limit
        )
        return [str(i) for i in ids]

    def finish(
        self, conversation_id: str, status: ConversationStatus, reason: str | None = None
    ) -> Conversation | None:
        """Move a live conversation to a final state and free its routes at once.

        Returns the finished conversation, or None if it was unknown or already finished.
        """
        finished = self.transition(
            conversation_id,
            lambda c: c.with_status(status, failure_reason=reason) if c.status.is_live else None,
        )
        if finished is not None:
            self._routes.release(finished)
        return finished

    def live_conversations(self) -> Iterator[Conversation]:
        """Every live conversation (pending or active), via the pending and expiry indexes."""
        ids = [str(i) for i in self._redis.zrange(self._keys.pending_conversations(), 0, -1)]
        ids += [str(i) for i in self._redis.zrange(self._keys.expiry(), 0, -1)]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for raw in self._redis.mget([self._keys.conversation(i) for i in chunk]):
                if raw:
                    conversation = Conversation.from_json(raw)
                    if conversation.status.is_live:
                        yield conversation
