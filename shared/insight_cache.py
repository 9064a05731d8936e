"""Number Insight answers kept per number for a while, and the attempts spent on each lookup.

A lookup that succeeded is not made again within SMSPROXY_INSIGHT_CACHE_SECONDS: a retried
create redoes only the lookup that failed, and a participant seen recently costs no call.
Each participant's transient failures are counted on their own, so that one busy lookup
cannot use up the other's attempts.
"""

from __future__ import annotations

import redis

from shared.clock import now
from shared.keys import INSIGHT, Keys

# How long the per-conversation attempt counts are kept: far past any create's retries.
ATTEMPTS_TTL_SECONDS = 3600


# A number's country is a field of that person's routes hash (shared/keys.py), not a key of its
# own: `INSIGHT` -> "<country> <until>" (Unix seconds). A key per number cost more than the
# answer. KEYS[1]: the routes hash; ARGV: the value, the cache's life. A hash made here (the
# person has no conversation yet) expires with the answer; an existing one keeps its own
# life (it holds routes and the listing, and lives longer than its answers need).
_REMEMBER = """
local new = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], '""" + INSIGHT + """', ARGV[1])
if new then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
"""


class InsightCache:
    """The country Number Insight gave each number, for a bounded time."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, keys: Keys | None = None) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._keys = keys or Keys()
        self._remember = client.register_script(_REMEMBER)

    def country(self, msisdn: str) -> str | None:
        return _fresh(self._redis.hget(self._keys.routes(msisdn), INSIGHT))

    def countries(self, msisdns: list[str]) -> list[str | None]:
        """`country` of each number, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for msisdn in msisdns:
            pipe.hget(self._keys.routes(msisdn), INSIGHT)
        return [_fresh(found) for found in pipe.execute()]

    def remember(self, msisdn: str, country: str) -> None:
        until = int(now()) + self._ttl
        self._remember(keys=[self._keys.routes(msisdn)], args=[f"{country} {until}", self._ttl])

    def forget(self, msisdn: str) -> int:
        """Drop a number's cached answer (erasure); 1 if there was one (in either layout: a
        release before the answer moved into the routes hash kept a key per number)."""
        pipe = self._redis.pipeline()
        pipe.hdel(self._keys.routes(msisdn), INSIGHT)
        pipe.delete(self._keys.insight(msisdn))
        return int(any(pipe.execute()))

    def failed_attempt(self, conversation_id: str, index: int) -> int:
        """Count one transient failure of participant `index`'s lookup; returns the count."""
        key = self._keys.insight_attempts(conversation_id)
        pipe = self._redis.pipeline()
        pipe.hincrby(key, str(index), 1)
        pipe.expire(key, ATTEMPTS_TTL_SECONDS)
        return int(pipe.execute()[0])


def _fresh(found: object) -> str | None:
    """The country in a cached answer, unless it is older than the cache's life."""
    country, _, until = str(found or "").partition(" ")
    if not country or not until.isdigit() or int(until) < now():
        return None  # never looked up, or the answer is older than the cache's life
    return country
