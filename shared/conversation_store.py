"""Conversation records in Redis: the record itself, the listing indexes, the expiry index.

A conversation is live while pending or active. Pending ones are indexed by creation time
(`pending`), active ones by expiry (`expiry`); a finished one leaves both and stays readable
for the retention (SMSPROXY_RETENTION_SECONDS). Finishing also frees its routes
(shared/routes.py), in the same call, so that no caller can end a conversation and forget its
numbers.

A record is a small hash of short fields (Conversation.to_fields), which Redis keeps as a
compact listpack; one with a value too long for that (a long callback URL, metadata, intro
text) is a JSON string instead, as every record was before the hash layout. Both are read,
whichever a record is: a deployment upgrades in place, and an old record turns into a hash
at its next change.

The listing indexes hold ids only: a client's is a sorted set by creation time; a person's
is a field `c:<id>` (value: creation time) in that person's routes hash (shared/routes.py),
so that a person costs one key, not two. A person listed before that layout also has a sorted
set (`person:<number>:convs`), read and pruned with the hash until it expires. Each index lives
at least as long as the longest-lived record it lists and then expires with it, so that no key
naming a person outlives the retention (a routes hash also holds live routes: it lives longer
than every live conversation of that person, by the retention).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import redis

from shared import folded_intros
from shared.clock import after, now
from shared.domain import ERASED, Conversation, ConversationStatus
from shared.keys import DEFAULT_RETENTION_SECONDS, LISTED, Keys
from shared.outbound import intro_id
from shared.routes import RouteTable
from shared.scripts import queue_script

# The longest a conversation stays pending (shared/conversations.py fails it after 900 s);
# with margin, for the lifetime of a new conversation's indexes.
_PENDING_ALLOWANCE_SECONDS = 3600

# Extend, never shorten, the life of each index in KEYS to ARGV[1] seconds (an index without
# an expiry, from before indexes had one, gets one).
_BUMP = """
local function bump(key, seconds)
  local ttl = redis.call('TTL', key)
  if ttl == -1 or (ttl >= 0 and ttl < seconds) then redis.call('EXPIRE', key, seconds) end
end
"""

# A new conversation, its listing entries and its place under its client's cap, in one step:
# two creates at the cap cannot both get in. KEYS: record, listing, pending, the two people's
# routes hashes, [the client's live count, and the live set that counted them before]. ARGV:
# JSON record ('' for a hash), created_at, id, cap (0: none), index life, then the hash's fields
# and values.
_ADD = _BUMP + """
local seconds = tonumber(ARGV[5])
if KEYS[6] then
  local live = tonumber(redis.call('GET', KEYS[6]) or '0') + redis.call('SCARD', KEYS[7])
  if tonumber(ARGV[4]) > 0 and live >= tonumber(ARGV[4]) then return 0 end
  redis.call('INCR', KEYS[6])
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
end
for i = 2, 3 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3]) end
for i = 4, 5 do redis.call('HSET', KEYS[i], '""" + LISTED + """' .. ARGV[3], ARGV[2]) end
for _, i in ipairs({2, 4, 5}) do bump(KEYS[i], seconds) end
return 1
"""

# A client's live conversation ends: it leaves the set that counted it if it was created when a
# set counted them (before the count), else the count (never below zero). In a script so that
# the choice and the change are one step. KEYS: count, set. ARGV: id.
_UNCOUNT = """
local function uncount()
  if redis.call('SREM', KEYS[2], ARGV[1]) == 0
      and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    redis.call('DECR', KEYS[1])
  end
end
"""

_FINISHED = _UNCOUNT + "uncount()"

# The same for a record about to be discarded, if it is still live (KEYS[3]: the record).
_DISCARDED = _UNCOUNT + """
local kind, status = redis.call('TYPE', KEYS[3])['ok'], false
if kind == 'hash' then
  status = redis.call('HGET', KEYS[3], 's')
elseif kind == 'string' then
  status = cjson.decode(redis.call('GET', KEYS[3]))['status']
end
if status == 'pending' or status == 'active' then uncount() end
"""

_BUMP_ALL = _BUMP + """
for _, key in ipairs(KEYS) do bump(key, tonumber(ARGV[1])) end
"""


def _record(conversation: Conversation) -> tuple[str, list[str]]:
    """(JSON, []) for a record kept as a string, ('', fields and values) for a hash."""
    fields = conversation.to_fields()
    if fields is None:
        return conversation.to_json(), []
    return "", [item for pair in fields.items() for item in pair]


def _write(
    pipe: Any, key: str, conversation: Conversation, folded: Mapping[str, str] | None = None
) -> None:
    """Queue the replacement of a record (whatever it was before: string or hash), keeping
    the `folded` intros it holds (shared/folded_intros.py)."""
    fields = conversation.to_fields()
    pipe.delete(key)
    if fields is None:
        pipe.set(key, conversation.to_json())
    else:
        pipe.hset(key, mapping={**fields, **(folded or {})})


def _load(conversation_id: str, found: Any) -> Conversation | None:
    """A record as HGETALL (a dict) or GET (a string, the JSON layout) returned it."""
    if isinstance(found, dict):
        return Conversation.from_fields(conversation_id, found) if found else None
    return Conversation.from_json(found) if found else None


class LiveConversationCap(Exception):
    """The client already holds as many live conversations as it may."""


class ConversationStore:
    """Conversations and their indexes; takes its Redis client in, never builds one."""

    def __init__(
        self, client: redis.Redis, routes: RouteTable, keys: Keys | None = None,
        *, retention_seconds: int = DEFAULT_RETENTION_SECONDS, legacy_owner: str | None = None,
    ) -> None:
        self._redis = client
        self._legacy_owner = legacy_owner
        self._routes = routes
        self._keys = keys or Keys()
        self._retention = retention_seconds
        self._add = client.register_script(_ADD)
        self._bump = client.register_script(_BUMP_ALL)
        self._finished = client.register_script(_FINISHED)
        self._discarded = client.register_script(_DISCARDED)

    def _counted(self, client: str) -> list[str]:
        """A client's live count, and the set that counted its live conversations before."""
        return [self._keys.client_live_count(client), self._keys.client_live(client)]

    def _listing(self, client: str | None) -> str:
        return (
            self._keys.client_conversations(client) if client is not None
            else self._keys.conversations()
        )

    def _indexes(self, conversation: Conversation) -> list[str]:
        """The keys listing this conversation: its client's listing, each person's routes hash
        (and, for what was listed before those held the listing, each person's sorted set)."""
        return [
            self._listing(conversation.client),
            *(self._keys.routes(p.number) for p in conversation.participants),
            *(self._keys.person_conversations(p.number) for p in conversation.participants),
        ]

    def _unlist(self, pipe: Any, number: str, conversation_id: str) -> None:
        """Queue taking a conversation out of a person's listing (both layouts)."""
        pipe.hdel(self._keys.routes(number), LISTED + conversation_id)
        pipe.zrem(self._keys.person_conversations(number), conversation_id)

    def _listed(self, number: str) -> list[tuple[str, float]]:
        """A person's listing, (id, created_at), newest first (equal times: larger id first,
        as Redis orders a sorted set)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._keys.routes(number))
        pipe.zrange(self._keys.person_conversations(number), 0, -1, withscores=True)
        fields, legacy = pipe.execute()
        entries = {str(i): float(score) for i, score in legacy}
        for name, value in fields.items():
            if str(name).startswith(LISTED):
                entries[str(name).removeprefix(LISTED)] = float(value)
        return sorted(entries.items(), key=lambda e: (e[1], e[0]), reverse=True)

    def add(self, conversation: Conversation, max_live: int = 0) -> None:
        """Store a new conversation (pending) and index it for listing.

        Raises LiveConversationCap when its client already holds `max_live` live ones.
        """
        listing, first, second, *_ = self._indexes(conversation)
        keys = [
            self._keys.conversation(conversation.id), listing,
            self._keys.pending_conversations(), first, second,
        ]
        if conversation.client is not None:
            keys += self._counted(conversation.client)
        life = conversation.ttl_seconds + _PENDING_ALLOWANCE_SECONDS + self._retention
        raw, fields = _record(conversation)
        added = self._add(keys=keys, args=[
            raw, conversation.created_at, conversation.id, max_live, life, *fields,
        ])
        if not added:
            raise LiveConversationCap(conversation.client)

    def discard(self, conversation: Conversation) -> None:
        """Remove a pending conversation that was never published (a lost idempotency race)."""
        pipe = self._redis.pipeline()
        if conversation.client is not None:
            queue_script(pipe, self._discarded,
                         [*self._counted(conversation.client),
                          self._keys.conversation(conversation.id)],
                         [conversation.id])
        pipe.delete(self._keys.conversation(conversation.id))
        pipe.zrem(self._keys.pending_conversations(), conversation.id)
        pipe.zrem(self._listing(conversation.client), conversation.id)
        for participant in conversation.participants:
            self._unlist(pipe, participant.number, conversation.id)
        pipe.execute()

    def live_count(self, client: str) -> int:
        """How many live conversations a client holds (against its cap)."""
        pipe = self._redis.pipeline(transaction=False)
        count, legacy = self._counted(client)
        pipe.get(count)
        pipe.scard(legacy)
        counted, listed = pipe.execute()
        return max(0, int(counted or 0)) + int(listed)

    def page(
        self,
        *,
        client: str | None = None,
        status: ConversationStatus | None = None,
        participant: str | None = None,
        cursor: tuple[float, str] | None = None,
        limit: int = 50,
        scan_budget: int = 1000,
    ) -> tuple[list[Conversation], tuple[float, str] | None]:
        """Newest first, filtered; returns a page and the cursor after its last item.

        With `client`, only what that client may see: its own conversations (and, listing by
        participant, those from before clients had names when it is their owner).

        The cursor is (created_at, id) of the last item, so that items created meanwhile never
        shift a page. A page may hold fewer than `limit` items when filtering skipped many
        (bounded by `scan_budget`); the next cursor continues from where the scan stopped.
        """
        index = self._listing(client)
        person = self._listed(participant) if participant else []
        found: list[Conversation] = []
        high: float = float("inf") if cursor is None else cursor[0]
        last: tuple[float, str] | None = cursor
        scanned = 0
        while len(found) < limit and scanned < scan_budget:
            num = min(200, limit + 50)
            if participant:
                candidates = [e for e in person if e[1] <= high][:num]
            else:
                batch = self._redis.zrevrangebyscore(
                    index, high, "-inf", start=0, num=num, withscores=True
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
            loaded = self._get_many([i for i, _ in candidates])
            for (conversation_id, score), conversation in zip(candidates, loaded, strict=True):
                scanned += 1
                last = (score, conversation_id)
                if conversation is None:  # finished and aged out
                    if participant:
                        pipe = self._redis.pipeline(transaction=False)
                        self._unlist(pipe, participant, conversation_id)
                        pipe.execute()
                    else:
                        self._redis.zrem(index, conversation_id)
                    continue
                if client is not None and not self.owned_by(conversation, client):
                    continue
                if status is None or conversation.status is status:
                    found.append(conversation)
                    if len(found) == limit:
                        break
            high = last[0] if last else high
        return found, last

    def get(self, conversation_id: str) -> Conversation | None:
        return self._get_many([conversation_id])[0]

    def owned_by(self, conversation: Conversation, client: str) -> bool:
        """Whether `client` may see and act on it (shared/domain.Conversation.visible_to)."""
        return conversation.visible_to(client, self._legacy_owner)

    def _get_many(self, ids: Sequence[str]) -> list[Conversation | None]:
        """Each record, hash or JSON string, in one round trip (two when some are strings)."""
        pipe = self._redis.pipeline(transaction=False)
        for conversation_id in ids:
            pipe.hgetall(self._keys.conversation(conversation_id))
        found: list[Any] = pipe.execute(raise_on_error=False)
        strings = [i for i, value in enumerate(found) if isinstance(value, redis.ResponseError)]
        if strings:  # WRONGTYPE: a record in the JSON layout
            raws = self._redis.mget([self._keys.conversation(ids[i]) for i in strings])
            for i, raw in zip(strings, raws, strict=True):
                found[i] = raw
        return [_load(i, value) for i, value in zip(ids, found, strict=True)]

    @staticmethod
    def _read_watched(
        pipe: Any, key: str, conversation_id: str
    ) -> tuple[Conversation | None, dict[str, str]]:
        """A record read on a pipeline that WATCHes it (commands run at once), and its hash
        as stored ({} for the JSON layout)."""
        try:
            found = pipe.hgetall(key)
        except redis.ResponseError:  # WRONGTYPE: a record in the JSON layout
            return _load(conversation_id, pipe.get(key)), {}
        return _load(conversation_id, found), found

    def _keep_folded(
        self, pipe: Any, raw: Mapping[str, str], changed: Conversation
    ) -> dict[str, str]:
        """The folded intros a rewritten record keeps (those not aged out, as their records
        would have); when it becomes a JSON string, they are queued back as records."""
        fields = changed.to_fields()
        kept: dict[str, str] = {}
        for side, field in enumerate(folded_intros.FIELDS):
            value = raw.get(field)
            owed_at = folded_intros.created_at(value, raw) if value else None
            if value is None or owed_at is None:
                continue
            left = int(owed_at + self._retention - time.time())
            if left <= 0:
                continue
            if fields is not None:
                kept[field] = folded_intros.keep(value, raw, fields, side)
                continue
            record = folded_intros.unfold(value, raw, side)
            if record is not None:
                key = self._keys.outbound(intro_id(changed.id, side))
                pipe.hset(key, mapping=record)
                pipe.expire(key, left)
        return kept

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
                    current, raw = self._read_watched(pipe, key, conversation_id)
                    if current is None:
                        return None
                    changed = change(current)
                    if changed is None:
                        return None
                    pipe.multi()
                    _write(pipe, key, changed, self._keep_folded(pipe, raw, changed))
                    if not changed.status.is_live:
                        pipe.expire(key, self._retention)
                        if current.status.is_live and changed.client is not None:
                            queue_script(pipe, self._finished,
                                         self._counted(changed.client), [changed.id])
                    if changed.status.is_live and changed.expires_at is not None:
                        pipe.zadd(self._keys.expiry(), {changed.id: changed.expires_at})
                    else:
                        pipe.zrem(self._keys.expiry(), changed.id)
                    if changed.status is not ConversationStatus.PENDING:
                        pipe.zrem(self._keys.pending_conversations(), changed.id)
                    life = self._index_life(changed)
                    if life is not None:
                        queue_script(pipe, self._bump, self._indexes(changed), [life])
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def _index_life(self, conversation: Conversation) -> int | None:
        """How long the indexes must live at least for this state of the conversation."""
        if not conversation.status.is_live:
            return self._retention
        if conversation.expires_at is None:
            return None  # pending: as long as `add` gave them
        return int(max(0.0, conversation.expires_at - now())) + self._retention

    def extend(self, conversation_id: str, at: float) -> Conversation | None:
        """Push a live conversation's expiry to `at` + its TTL (never earlier than it was)."""
        def later(c: Conversation) -> Conversation | None:
            if c.status is not ConversationStatus.ACTIVE or c.expires_at is None:
                return None
            wanted = after(at, c.ttl_seconds)
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

    def of_person(self, number: str) -> list[str]:
        """Ids of every conversation a person's number is listed in (any client's)."""
        return [conversation_id for conversation_id, _ in reversed(self._listed(number))]

    def redact(self, conversation_id: str, number: str) -> Conversation | None:
        """Replace a participant's number and name with ERASED in a finished conversation and
        take it out of their index (also when the record itself is gone); the redacted
        conversation, or None if there was nothing to do."""
        def without(c: Conversation) -> Conversation | None:
            if c.status.is_live or c.counterpart_of(number) is None:
                return None
            erased = tuple(
                replace(p, number=ERASED, display_name=None) if p.number == number else p
                for p in c.participants
            )
            return replace(c, participants=(erased[0], erased[1]))

        redacted = self.transition(conversation_id, without)
        pipe = self._redis.pipeline(transaction=False)
        self._unlist(pipe, number, conversation_id)
        pipe.execute()
        return redacted

    def is_listed(self, number: str) -> bool:
        """Whether any conversation lists the person."""
        return bool(self._listed(number))

    def live_conversations(self) -> Iterator[Conversation]:
        """Every live conversation (pending or active), via the pending and expiry indexes."""
        ids = [str(i) for i in self._redis.zrange(self._keys.pending_conversations(), 0, -1)]
        ids += [str(i) for i in self._redis.zrange(self._keys.expiry(), 0, -1)]
        for start in range(0, len(ids), 500):
            for conversation in self._get_many(ids[start:start + 500]):
                if conversation is not None and conversation.status.is_live:
                    yield conversation
