"""Counters shared by every process and host, kept in Redis and exported by web/ at /metrics."""

from __future__ import annotations

import redis

from shared.keys import Keys


class Counters:
    """Dotted counter names (`smsproxy.outbound.sent`), incremented atomically in one hash."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def incr(self, name: str, amount: int = 1) -> None:
        self._redis.hincrby(self._keys.metrics(), name, amount)

    def snapshot(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._redis.hgetall(self._keys.metrics()).items()}
