"""A token bucket in Redis, shared by every worker on every host (Vonage's limit is per API key)."""

from __future__ import annotations

import redis

from shared.keys import Keys

# Redis's own clock, so that hosts with skewed clocks still share one bucket. Tokens never go
# negative: a caller that finds the bucket empty is told how long to wait and consumes nothing,
# so the rate holds at the moment of sending, whatever delays the retried task meets.
# A Lua function, so that other scripts (shared/relay_caps.py) take from a bucket the same way.
BUCKET_LUA = """
local function take_token(key, rate, burst)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return wait
end
"""

# A caller told to wait is also given a turn: the waiters queue one token apart, each told to
# come back when its own token is due, instead of every one of them when the next single token
# is (a backlog would otherwise retry as one herd, each wake-up costing a task run, and a worker
# busy re-running waiters sends less). A turn is only a hint: the token is still taken at the
# moment of sending, so a turn missed or overtaken costs a wait, never the rate. A turn further
# off than the caller will wait (ARGV[3], its longest countdown) is not handed out: that caller
# comes back before it and would take a second turn, leaving the first one's token unclaimed.
_TAKE = BUCKET_LUA + """
local rate = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[3])
local wait = take_token(KEYS[1], rate, tonumber(ARGV[2]))
if wait > 0 then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local last = tonumber(redis.call('HGET', KEYS[1], 'turn')) or 0
  local turn = math.max(now + wait, last + 1 / rate)
  if max_wait > 0 and turn - now > max_wait then
    wait = max_wait
  else
    redis.call('HSET', KEYS[1], 'turn', tostring(turn))
    wait = turn - now
  end
end
return tostring(wait)
"""


class RateLimiter:
    """`take()` returns 0.0 when a send may go now, else the seconds until this caller's turn
    (the callers already waiting go first)."""

    def __init__(
        self, client: redis.Redis, name: str, rate: float, burst: int, keys: Keys | None = None,
        *, max_wait: float = 0.0,
    ) -> None:
        self._key = (keys or Keys()).rate_bucket(name)
        self._rate = rate
        self._burst = max(1, burst)
        self._max_wait = max_wait  # the longest a caller waits before asking again (0: any)
        self._take = client.register_script(_TAKE)

    def take(self) -> float:
        if self._rate <= 0:
            return 0.0  # unlimited
        return float(
            self._take(keys=[self._key], args=[self._rate, self._burst, self._max_wait]))
