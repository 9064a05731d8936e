"""Conversations, routes and allocation in Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import redis

from shared.domain import Conversation, ConversationStatus
from shared.keys import Keys

# Allocation must be atomic: two creates involving the same person must never both take the
# same free number. One script reads the person's live routes and the pool and writes the new
# routes in a single step. It is idempotent per conversation: a re-run returns what it gave.
_ALLOCATE = """
local prefix, conv = ARGV[1], ARGV[2]
local function existing(routes)
  local all = redis.call('HGETALL', routes)
  for i = 1, #all, 2 do
    if all[i + 1] == conv then return all[i] end
  end
  return false
end
local function pick(routes, pools, sticky)
  for _, pool in ipairs(pools) do
    if sticky ~= '' and redis.call('ZSCORE', pool, sticky)
        and redis.call('HEXISTS', routes, sticky) == 0 then
      return sticky, pool
    end
  end
  -- least-loaded first within each country, countries in order of preference
  for _, pool in ipairs(pools) do
    for _, n in ipairs(redis.call('ZRANGE', pool, 0, -1)) do
      if redis.call('HEXISTS', routes, n) == 0 then return n, pool end
    end
  end
  return false, false
end
-- ARGV[5] = how many pool countries the first participant may use, then those countries,
-- then the same for the second participant.
local pools, at = {{}, {}}, 5
for i = 1, 2 do
  local count = tonumber(ARGV[at])
  for j = 1, count do table.insert(pools[i], prefix .. 'pool:' .. ARGV[at + j]) end
  at = at + count + 1
end
local got = {existing(KEYS[1]), existing(KEYS[2])}
if got[1] and got[2] then return {'ok', got[1], got[2]} end
local chosen, chosen_pool = {}, {}
for i = 1, 2 do
  if got[i] then
    chosen[i] = got[i]
  else
    chosen[i], chosen_pool[i] = pick(KEYS[i], pools[i], ARGV[i + 2])
    if not chosen[i] then return {'exhausted', tostring(i - 1), ''} end
  end
end
for i = 1, 2 do
  if not got[i] then
    redis.call('HSET', KEYS[i], chosen[i], conv)
    redis.call('HINCRBY', prefix .. 'number:' .. chosen[i], 'routes', 1)
    redis.call('ZINCRBY', chosen_pool[i], 1, chosen[i])
  end
end
return {'ok', chosen[1], chosen[2]}
"""

# Releasing checks the route still belongs to this conversation, so that a late or repeated
# close never frees a route a newer conversation now holds.
_RELEASE = """
local prefix, conv = ARGV[1], ARGV[2]
local freed = 0
for i = 1, #KEYS do
  local proxy = ARGV[i + 2]
  if proxy ~= '' and redis.call('HGET', KEYS[i], proxy) == conv then
    redis.call('HDEL', KEYS[i], proxy)
    local number = prefix .. 'number:' .. proxy
    redis.call('HINCRBY', number, 'routes', -1)
    local country = redis.call('HGET', number, 'country')
    if country then
      local pool = prefix .. 'pool:' .. country
      if redis.call('ZSCORE', pool, proxy) then redis.call('ZINCRBY', pool, -1, proxy) end
    end
    freed = freed + 1
  end
end
return freed
"""


# A finished conversation stays readable (API, audit) this long, then Redis drops it.
FINISHED_RETENTION_SECONDS = 30 * 24 * 3600


# Moves one participant of a live conversation off a number the account lost, onto a free number
# of the given countries (not one the person already uses), keeping route counts exact.
_REROUTE = """
local prefix, conv, lost = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', KEYS[1], lost) ~= conv then return false end
for i = 5, 4 + tonumber(ARGV[4]) do
  local pool = prefix .. 'pool:' .. ARGV[i]
  for _, n in ipairs(redis.call('ZRANGE', pool, 0, -1)) do
    if n ~= lost and redis.call('HEXISTS', KEYS[1], n) == 0 then
      redis.call('HDEL', KEYS[1], lost)
      redis.call('HINCRBY', prefix .. 'number:' .. lost, 'routes', -1)
      redis.call('HSET', KEYS[1], n, conv)
      redis.call('HINCRBY', prefix .. 'number:' .. n, 'routes', 1)
      redis.call('ZINCRBY', pool, 1, n)
      return n
    end
  end
end
return false
"""


class PoolExhausted(Exception):
    """No free number for a participant; `index` says which (0 or 1)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"no free proxy number for participant {index + 1}")
        self.index = index


@dataclass(frozen=True, slots=True)
class PoolNumber:
    """A virtual number the proxy owns, with its live-route count."""

    msisdn: str
    country: str
    routes: int
    state: str
    monthly_cost: str | None


class ConversationStore:
    """Conversations and their routes; takes its Redis client in, never builds one."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._allocate = client.register_script(_ALLOCATE)
        self._release = client.register_script(_RELEASE)
        self._reroute = client.register_script(_REROUTE)

    @property
    def keys(self) -> Keys:
        return self._keys

    # -- conversations -------------------------------------------------------------------

    def add(self, conversation: Conversation) -> None:
        """Store a new conversation (pending) and index it for listing."""
        pipe = self._redis.pipeline()
        pipe.set(self._keys.conversation(conversation.id), conversation.to_json())
        entry = {conversation.id: conversation.created_at}
        pipe.zadd(self._keys.conversations(), entry)
        for participant in conversation.participants:
            pipe.zadd(self._keys.person_conversations(participant.number), entry)
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

    def remember_idempotency_key(
        self, key: str, fingerprint: str, conversation_id: str, ttl_seconds: int
    ) -> tuple[str, str] | None:
        """Bind a client's Idempotency-Key to a request; returns the earlier binding if any.

        The earlier binding is (fingerprint of its body, its conversation id).
        """
        redis_key = self._keys.idempotency(key)
        value = f"{fingerprint}:{conversation_id}"
        if self._redis.set(redis_key, value, nx=True, ex=ttl_seconds):
            return None
        earlier = str(self._redis.get(redis_key) or value)
        found_fingerprint, _, found_id = earlier.partition(":")
        return found_fingerprint, found_id

    def forget_idempotency_key(self, key: str) -> None:
        self._redis.delete(self._keys.idempotency(key))

    # -- routes --------------------------------------------------------------------------

    def find_route(self, real_number: str, virtual_number: str) -> str | None:
        """The live conversation a person reaches by texting a virtual number: one HGET."""
        found = self._redis.hget(self._keys.routes(real_number), virtual_number)
        return str(found) if found is not None else None

    def sticky_proxies(self, first: str, second: str) -> tuple[str, str]:
        """The proxies `first` and `second` had the last time they talked, or empty strings."""
        found = self._redis.hmget(self._keys.pair(first, second), [first, second])
        return (str(found[0] or ""), str(found[1] or ""))

    def allocate(
        self,
        conversation_id: str,
        participants: tuple[tuple[str, Sequence[str]], tuple[str, Sequence[str]]],
    ) -> tuple[str, str]:
        """Reserve a proxy for each (real number, pool countries in order of preference).

        Raises PoolExhausted naming the participant for whom no country had a free number.
        """
        (first, first_countries), (second, second_countries) = participants
        if isinstance(first_countries, str) or isinstance(second_countries, str):
            raise TypeError("countries must be a sequence of country codes, not one string")
        sticky = self.sticky_proxies(first, second)
        result = self._allocate(
            keys=[self._keys.routes(first), self._keys.routes(second)],
            args=[
                self._keys.prefix, conversation_id, sticky[0], sticky[1],
                len(first_countries), *first_countries,
                len(second_countries), *second_countries,
            ],
        )
        status, a, b = (str(x) for x in result)
        if status == "exhausted":
            raise PoolExhausted(int(a))
        pair = self._keys.pair(first, second)
        pipe = self._redis.pipeline()
        pipe.hset(pair, mapping={first: a, second: b})
        pipe.expire(pair, FINISHED_RETENTION_SECONDS)  # a pair that never talks again is forgotten
        pipe.execute()
        return a, b

    def release(self, conversation: Conversation) -> int:
        """Free a conversation's routes at once; returns how many were still held."""
        keys, proxies = [], []
        for participant in conversation.participants:
            keys.append(self._keys.routes(participant.number))
            proxies.append(participant.proxy_number or "")
        return int(self._release(keys=keys, args=[self._keys.prefix, conversation.id, *proxies]))

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
            self.release(finished)
        return finished

    # -- pool ----------------------------------------------------------------------------

    def add_pool_number(
        self, msisdn: str, country: str, *, monthly_cost: str | None = None
    ) -> bool:
        """Make a number allocatable in its country; False if it already was."""
        number_key = self._keys.number(msisdn)
        pipe = self._redis.pipeline()
        pipe.hsetnx(number_key, "routes", 0)
        pipe.hset(number_key, mapping={"country": country, "state": "active"})
        if monthly_cost is not None:
            pipe.hset(number_key, "cost", monthly_cost)
        pipe.sadd(self._keys.pool_countries(), country)
        pipe.sadd(self._keys.pool_members(), msisdn)
        pipe.execute()
        routes = int(self._redis.hget(number_key, "routes") or 0)
        return bool(self._redis.zadd(self._keys.pool(country), {msisdn: routes}, nx=True))

    def pool_countries(self) -> list[str]:
        return sorted(str(c) for c in self._redis.smembers(self._keys.pool_countries()))

    def pool_numbers(self, country: str | None = None) -> list[PoolNumber]:
        """Every number the pool manages (allocatable or draining), by country and number."""
        members = sorted(str(m) for m in self._redis.smembers(self._keys.pool_members()))
        pipe = self._redis.pipeline()
        for msisdn in members:
            pipe.hgetall(self._keys.number(msisdn))
        found = []
        for msisdn, data in zip(members, pipe.execute(), strict=True):
            if not data or (country and data.get("country") != country):
                continue
            found.append(
                PoolNumber(
                    msisdn=msisdn,
                    country=str(data.get("country", "")),
                    routes=int(data.get("routes", 0)),
                    state=str(data.get("state", "active")),
                    monthly_cost=str(data["cost"]) if "cost" in data else None,
                )
            )
        return sorted(found, key=lambda n: (n.country, n.msisdn))

    def pool_size(self, country: str) -> int:
        """Allocatable numbers of a country (draining ones excluded)."""
        return int(self._redis.zcard(self._keys.pool(country)))

    def drain_number(self, msisdn: str) -> None:
        """No new conversations on this number; its live ones carry on."""
        country = self._redis.hget(self._keys.number(msisdn), "country")
        pipe = self._redis.pipeline()
        pipe.hset(self._keys.number(msisdn), "state", "draining")
        if country:
            pipe.zrem(self._keys.pool(str(country)), msisdn)
        pipe.execute()

    def forget_number(self, msisdn: str) -> None:
        """Drop a number from the pool entirely (cancelled, or no longer owned)."""
        country = self._redis.hget(self._keys.number(msisdn), "country")
        pipe = self._redis.pipeline()
        if country:
            pipe.zrem(self._keys.pool(str(country)), msisdn)
        pipe.srem(self._keys.pool_members(), msisdn)
        pipe.delete(self._keys.number(msisdn))
        pipe.execute()

    def live_conversations(self) -> Iterator[Conversation]:
        """Every live conversation (pending or active), via the expiry index."""
        ids = [str(i) for i in self._redis.zrange(self._keys.expiry(), 0, -1)]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for raw in self._redis.mget([self._keys.conversation(i) for i in chunk]):
                if raw:
                    conversation = Conversation.from_json(raw)
                    if conversation.status.is_live:
                        yield conversation

    def reroute(
        self, conversation_id: str, person: str, lost: str, countries: Sequence[str]
    ) -> str | None:
        """Move a person's route in a conversation off `lost`; the new number, or None if full."""
        moved = self._reroute(
            keys=[self._keys.routes(person)],
            args=[self._keys.prefix, conversation_id, lost, len(countries), *countries],
        )
        return str(moved) if moved else None


def now() -> float:
    """Wall-clock seconds; one name so tests and callers agree on the clock used."""
    return time.time()
