"""Number Insight answers kept per number for a while, and the attempts spent on each lookup.

A lookup that succeeded is not made again within SMSPROXY_INSIGHT_CACHE_SECONDS: a retried
create redoes only the lookup that failed, and a participant seen recently costs no call.
Each participant's transient failures are counted on their own, so that one busy lookup
cannot use up the other's attempts.
"""

from __future__ import annotations

import redis

from shared.keys import Keys

# How long the per-conversation attempt counts are kept: far past any create's retries.
ATTEMPTS_TTL_SECONDS = 3600


class InsightCache:
    """The country Number Insight gave each number, for a bounded time."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, keys: Keys | None = None) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._keys = keys or Keys()

    def country(self, msisdn: str) -> str | None:
        found = self._redis.get(self._keys.insight(msisdn))
        return str(found) if found is not None else None

    def countries(self, msisdns: list[str]) -> list[str | None]:
        """`country` of each number, in one round trip."""
        found = self._redis.mget([self._keys.insight(m) for m in msisdns])
        return [str(c) if c is not None else None for c in found]

    def remember(self, msisdn: str, country: str) -> None:
        self._redis.set(self._keys.insight(msisdn), country, ex=self._ttl)

    def forget(self, msisdn: str) -> int:
        """Drop a number's cached answer (erasure); 1 if there was one."""
        return int(self._redis.delete(self._keys.insight(msisdn)))

    def failed_attempt(self, conversation_id: str, index: int) -> int:
        """Count one transient failure of participant `index`'s lookup; returns the count."""
        key = self._keys.insight_attempts(conversation_id)
        pipe = self._redis.pipeline()
        pipe.hincrby(key, str(index), 1)
        pipe.expire(key, ATTEMPTS_TTL_SECONDS)
        return int(pipe.execute()[0])
