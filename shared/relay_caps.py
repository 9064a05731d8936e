"""Caps on what one conversation relays, and the account's daily send count.

Each conversation has a token bucket (steady rate and burst, the same Lua bucket as the Vonage
send rate: shared/ratelimit.py) and a daily count. The verdict on one inbound message is taken
once, atomically, and remembered under its message id: a redelivered task gets the same verdict
instead of taking a second token (and perhaps a different answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import redis

from shared.keys import Keys
from shared.ratelimit import BUCKET_LUA
from shared.settings import Settings

# How long a message's verdict is remembered: far past any redelivery or re-publication.
VERDICT_SECONDS = 24 * 3600
DAY_SECONDS = 24 * 3600

# KEYS: the verdict, the bucket, the daily count, the rate notice flag, the daily notice flag.
# ARGV: rate per second (0: none), burst, daily cap (0: none), verdict ttl, day, rate notice
# window. Returns "ok", or "rate"/"daily", with ":notify" when the sender is to be told (once
# per window: the first refused message of the window).
_VERDICT = BUCKET_LUA + """
local known = redis.call('GET', KEYS[1])
if known then return known end
local rate, burst, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local verdict = 'ok'
if cap > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= cap then
  verdict = 'daily'
elseif rate > 0 and take_token(KEYS[2], rate, burst) > 0 then
  verdict = 'rate'
end
if verdict == 'ok' then
  if cap > 0 and redis.call('INCR', KEYS[3]) == 1 then
    redis.call('EXPIRE', KEYS[3], ARGV[5])
  end
else
  local flag, window = KEYS[4], tonumber(ARGV[6])
  if verdict == 'daily' then
    flag, window = KEYS[5], math.max(1, redis.call('TTL', KEYS[3]))
  end
  if redis.call('SET', flag, '1', 'NX', 'EX', window) then verdict = verdict .. ':notify' end
end
redis.call('SET', KEYS[1], verdict, 'EX', ARGV[4])
return verdict
"""


class Cap(StrEnum):
    RATE = "rate"  # the conversation's steady rate and burst
    DAILY = "daily"  # the conversation's relays per 24 h


@dataclass(frozen=True, slots=True)
class CapVerdict:
    """Whether a message is over a cap, which, and whether its sender is to be told."""

    over: Cap | None = None
    notify: bool = False


class RelayCaps:
    """The per-conversation caps; takes its Redis client in."""

    def __init__(self, client: redis.Redis, settings: Settings, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._settings = settings
        self._verdict = client.register_script(_VERDICT)

    @property
    def enabled(self) -> bool:
        s = self._settings
        return s.conversation_relay_rate_per_minute > 0 or s.conversation_daily_relays > 0

    @property
    def rate_notice_seconds(self) -> int:
        """A rate-capped sender is told once per this long: the time the bucket takes to
        fill, at least a minute."""
        rate = self._settings.conversation_relay_rate_per_minute / 60
        return max(60, int(self._settings.conversation_relay_burst / rate)) if rate else 60

    def verdict(self, conversation_id: str, message_id: str, sender: str) -> CapVerdict:
        """Count one message against its conversation's caps, once per message id."""
        if not self.enabled:
            return CapVerdict()
        k = self._keys
        raw = str(self._verdict(
            keys=[k.cap_verdict(message_id), k.rate_bucket(f"conversation:{conversation_id}"),
                  k.conversation_daily_relays(conversation_id),
                  k.allowance(f"cap:rate:{conversation_id}:{sender}"),
                  k.allowance(f"cap:daily:{conversation_id}:{sender}")],
            args=[self._settings.conversation_relay_rate_per_minute / 60,
                  self._settings.conversation_relay_burst,
                  self._settings.conversation_daily_relays, VERDICT_SECONDS, DAY_SECONDS,
                  self.rate_notice_seconds],
        ))
        over, _, notify = raw.partition(":")
        return CapVerdict(Cap(over) if over != "ok" else None, notify == "notify")


class DailySends:
    """Sends made per UTC day, across the account (SMSPROXY_DAILY_SEND_LIMIT)."""

    def __init__(self, client: redis.Redis, settings: Settings, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._limit = settings.daily_send_limit

    @staticmethod
    def today(at: float | None = None) -> str:
        return time.strftime("%Y%m%d", time.gmtime(time.time() if at is None else at))

    def count(self) -> int | None:
        """Count one send made now; its number today (None when there is no limit)."""
        if self._limit <= 0:
            return None
        key = self._keys.daily_sends(self.today())
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * DAY_SECONDS)
        made, _ = pipe.execute()
        return int(made)

    def reached(self) -> bool:
        """Whether today's sends have reached the limit (never, with no limit)."""
        if self._limit <= 0:
            return False
        made = self._redis.get(self._keys.daily_sends(self.today()))
        return int(made or 0) >= self._limit
