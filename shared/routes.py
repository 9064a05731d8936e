"""Routes and allocation: who reaches which conversation by texting which virtual number.

A route is (a person's real number, the virtual number they text) -> conversation id, one hash
per person, so a lookup is one HGET whatever the number of live conversations. Allocation
reserves a virtual number per participant that none of that person's other live routes uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from shared.domain import Conversation
from shared.keys import LISTED, Keys

# Allocation must be atomic: two creates involving the same person must never both take the
# same free number. One script reads the person's live routes and the pool and writes the new
# routes in a single step. It is idempotent per conversation: a re-run returns what it gave.
_ALLOCATE = """
local prefix, conv = ARGV[1], ARGV[2]
-- The proxies two people had in their latest conversation together, read from the newest
-- entries of the shorter of their listings (the LISTED fields of KEYS[1] or KEYS[2], and the
-- sorted set of that layout's predecessor, KEYS[3] or KEYS[4]): so no key remembers the pair
-- itself, and the memory ends with their conversations' records (or an erasure of them).
-- ARGV[3]: the conversation key prefix; ARGV[4]: how many entries to look at.
local listed = '""" + LISTED + """'
local function text(v) return type(v) == 'string' and v ~= '' and v or false end
local function newest(routes, legacy, n)
  local entries = {}
  local all = redis.call('HGETALL', routes)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #listed) == listed then
      table.insert(entries, {string.sub(all[i], #listed + 1), tonumber(all[i + 1])})
    end
  end
  local old = redis.call('ZREVRANGE', legacy, 0, n - 1, 'WITHSCORES')
  for i = 1, #old, 2 do table.insert(entries, {old[i], tonumber(old[i + 1])}) end
  table.sort(entries, function(x, y) return x[2] > y[2] end)
  return entries
end
local function last_proxies(first, second)
  local mine = 1
  if redis.call('HLEN', KEYS[2]) + redis.call('ZCARD', KEYS[4])
      < redis.call('HLEN', KEYS[1]) + redis.call('ZCARD', KEYS[3]) then mine = 2 end
  local n = tonumber(ARGV[4])
  local entries = newest(KEYS[mine], KEYS[mine + 2], n)
  for j = 1, math.min(#entries, n) do
    local id = entries[j][1]
    if id ~= conv then
      local key = ARGV[3] .. id
      local kind = redis.call('TYPE', key)['ok']
      local an, ap, bn, bp = false, false, false, false
      if kind == 'hash' then
        an, ap, bn, bp = unpack(redis.call('HMGET', key, 'an', 'ap', 'bn', 'bp'))
      elseif kind == 'string' then  -- a record in the JSON layout
        local people = cjson.decode(redis.call('GET', key))['participants']
        an, ap = people[1]['number'], people[1]['proxy_number']
        bn, bp = people[2]['number'], people[2]['proxy_number']
      end
      an, ap, bn, bp = text(an), text(ap), text(bn), text(bp)
      if ap and bp then
        if an == first and bn == second then return ap, bp end
        if an == second and bn == first then return bp, ap end
      end
    end
  end
  return '', ''
end
local function existing(routes)
  local all = redis.call('HGETALL', routes)
  for i = 1, #all, 2 do
    if all[i + 1] == conv then return all[i] end
  end
  return false
end
-- a number is free for a person when none of their live routes uses it and they have not
-- opted out of it (opt_out: the person's opt-out key without the number, from Keys.opt_out)
local function free(routes, opt_out, n)
  return redis.call('HEXISTS', routes, n) == 0
    and redis.call('HGET', opt_out .. n, 'state') ~= 'opted_out'
end
local function pick(routes, opt_out, pools, sticky)
  for _, pool in ipairs(pools) do
    if sticky ~= '' and redis.call('ZSCORE', pool, sticky) and free(routes, opt_out, sticky) then
      return sticky, pool
    end
  end
  -- least-loaded first within each country, countries in order of preference
  for _, pool in ipairs(pools) do
    for _, n in ipairs(redis.call('ZRANGE', pool, 0, -1)) do
      if free(routes, opt_out, n) then return n, pool end
    end
  end
  return false, false
end
-- ARGV[5], ARGV[6] = each participant's opt-out key prefix; ARGV[7] = how many pool countries
-- the first participant may use, then those countries, then the same for the second; then the
-- two people's numbers.
local pools, at = {{}, {}}, 7
for i = 1, 2 do
  local count = tonumber(ARGV[at])
  for j = 1, count do table.insert(pools[i], prefix .. 'pool:' .. ARGV[at + j]) end
  at = at + count + 1
end
local got = {existing(KEYS[1]), existing(KEYS[2])}
if got[1] and got[2] then return {'ok', got[1], got[2]} end
local before = {last_proxies(ARGV[at], ARGV[at + 1])}
local chosen, chosen_pool = {}, {}
for i = 1, 2 do
  if got[i] then
    chosen[i] = got[i]
  else
    chosen[i], chosen_pool[i] = pick(KEYS[i], ARGV[i + 4], pools[i], before[i])
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


# Moves one participant of a live conversation off a number the account lost, onto a free number
# of the given countries (not one the person already uses or opted out of), keeping route
# counts exact. ARGV[4]: the person's opt-out key prefix; ARGV[5]: how many countries follow.
_REROUTE = """
local prefix, conv, lost, opt_out = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', KEYS[1], lost) ~= conv then return false end
for i = 6, 5 + tonumber(ARGV[5]) do
  local pool = prefix .. 'pool:' .. ARGV[i]
  for _, n in ipairs(redis.call('ZRANGE', pool, 0, -1)) do
    if n ~= lost and redis.call('HEXISTS', KEYS[1], n) == 0
        and redis.call('HGET', opt_out .. n, 'state') ~= 'opted_out' then
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


# How many of a person's newest conversations the allocation looks through for the pair's
# last proxies (in the listing of whichever of the two has fewer): a preference, so a bound.
STICKY_LOOKBACK = 20


class PoolExhausted(Exception):
    """No free number for a participant; `index` says which (0 or 1)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"no free proxy number for participant {index + 1}")
        self.index = index


class RouteTable:
    """Each person's live routes, and the atomic scripts that take, free and move them."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._allocate = client.register_script(_ALLOCATE)
        self._release = client.register_script(_RELEASE)
        self._reroute = client.register_script(_REROUTE)

    def find(self, real_number: str, virtual_number: str) -> str | None:
        """The live conversation a person reaches by texting a virtual number: one HGET."""
        found = self._redis.hget(self._keys.routes(real_number), virtual_number)
        return str(found) if found is not None else None

    def forget_pair(self, first: str, second: str) -> int:
        """Forget which proxies two people last used (erasure); 1 if it was remembered.

        Since the sticky proxies come from the pair's conversations (their records are
        redacted by the erasure), only a pair key written before that is left to delete.
        """
        return int(self._redis.delete(self._keys.pair(first, second)))

    def allocate(
        self,
        conversation_id: str,
        participants: tuple[tuple[str, Sequence[str]], tuple[str, Sequence[str]]],
    ) -> tuple[str, str]:
        """Reserve a proxy for each (real number, pool countries in order of preference).

        A number the person opted out of (STOP, shared/opt_outs.py) is not free for them.
        Raises PoolExhausted naming the participant for whom no country had a free number.
        """
        (first, first_countries), (second, second_countries) = participants
        if isinstance(first_countries, str) or isinstance(second_countries, str):
            raise TypeError("countries must be a sequence of country codes, not one string")
        result = self._allocate(
            keys=[
                self._keys.routes(first), self._keys.routes(second),
                self._keys.person_conversations(first), self._keys.person_conversations(second),
            ],
            args=[
                self._keys.prefix, conversation_id, self._keys.conversation(""),
                STICKY_LOOKBACK,
                self._keys.opt_out(first, ""), self._keys.opt_out(second, ""),
                len(first_countries), *first_countries,
                len(second_countries), *second_countries,
                first, second,
            ],
        )
        status, a, b = (str(x) for x in result)
        if status == "exhausted":
            raise PoolExhausted(int(a))
        return a, b

    def release(self, conversation: Conversation) -> int:
        """Free a conversation's routes at once; returns how many were still held."""
        keys, proxies = [], []
        for participant in conversation.participants:
            keys.append(self._keys.routes(participant.number))
            proxies.append(participant.proxy_number or "")
        return int(self._release(keys=keys, args=[self._keys.prefix, conversation.id, *proxies]))

    def reroute(
        self, conversation_id: str, person: str, lost: str, countries: Sequence[str]
    ) -> str | None:
        """Move a person's route in a conversation off `lost`; the new number, or None if full."""
        moved = self._reroute(
            keys=[self._keys.routes(person)],
            args=[self._keys.prefix, conversation_id, lost, self._keys.opt_out(person, ""),
                  len(countries), *countries],
        )
        return str(moved) if moved else None

