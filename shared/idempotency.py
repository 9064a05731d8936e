"""Idempotency-Key bindings of the create API: one key, one request body, one conversation."""

from __future__ import annotations

import redis

from shared.keys import Keys


class IdempotencyKeys:
    """A client's Idempotency-Key bound to (fingerprint of the body, conversation id)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def remember(
        self, key: str, fingerprint: str, conversation_id: str, ttl_seconds: int
    ) -> tuple[str, str] | None:
        """Bind a key to a request; returns the earlier binding (fingerprint, id) if any."""
        redis_key = self._keys.idempotency(key)
        value = f"{fingerprint}:{conversation_id}"
        if self._redis.set(redis_key, value, nx=True, ex=ttl_seconds):
            return None
        earlier = str(self._redis.get(redis_key) or value)
        found_fingerprint, _, found_id = earlier.partition(":")
        return found_fingerprint, found_id

    def forget(self, key: str) -> None:
        self._redis.delete(self._keys.idempotency(key))
