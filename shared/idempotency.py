"""Idempotency-Key bindings of the create API: one key, one request body, one conversation."""

from __future__ import annotations

import redis

from shared.keys import Keys


class IdempotencyKeys:
    """A client's Idempotency-Key bound to (fingerprint of the body, conversation id).

    Keys are per client: two clients that happen to pick the same key never see each other's
    conversation, nor a conflict.
    """

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def remember(
        self, client: str, key: str, fingerprint: str, conversation_id: str, ttl_seconds: int
    ) -> tuple[str, str] | None:
        """Bind a key to a request; returns the earlier binding (fingerprint, id) if any."""
        redis_key = self._keys.idempotency(client, key)
        value = f"{fingerprint}:{conversation_id}"
        if self._redis.set(redis_key, value, nx=True, ex=ttl_seconds):
            return None
        earlier = str(self._redis.get(redis_key) or value)
        found_fingerprint, _, found_id = earlier.partition(":")
        return found_fingerprint, found_id

    def bound(self, client: str, key: str) -> tuple[str, str] | None:
        """What a key is bound to now (fingerprint, id), if anything."""
        value = self._redis.get(self._keys.idempotency(client, key))
        if value is None:
            return None
        fingerprint, _, found_id = str(value).partition(":")
        return fingerprint, found_id

    def forget(self, client: str, key: str) -> None:
        self._redis.delete(self._keys.idempotency(client, key))
