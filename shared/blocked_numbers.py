"""Blocked numbers: their texts are never relayed and they join no new conversation.

One hash per blocked number (why, since when) and one sorted set of them all, scored 0 so that
Redis orders them by number: a page of the listing resumes after the last number it showed,
whatever was blocked or unblocked meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from shared.keys import Keys
from shared.read_batch import Read, ReadBatch


@dataclass(frozen=True, slots=True)
class BlockedNumber:
    """A blocked msisdn, the operator's reason (if given) and when it was first blocked."""

    msisdn: str
    blocked_at: float
    reason: str | None = None


class BlockedNumbers:
    """The block list; takes its Redis client in, never builds one."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def block(self, msisdn: str, at: float, reason: str | None = None) -> BlockedNumber:
        """Block a number (again: the reason is replaced, the first time is kept)."""
        key = self._keys.blocked_number(msisdn)
        pipe = self._redis.pipeline()  # MULTI: the hash and the index change together
        pipe.hsetnx(key, "at", repr(at))
        if reason is None:
            pipe.hdel(key, "reason")
        else:
            pipe.hset(key, "reason", reason)
        pipe.zadd(self._keys.blocked_numbers(), {msisdn: 0})
        pipe.hgetall(key)
        stored = pipe.execute()[-1]
        return _entry(msisdn, stored)

    def unblock(self, msisdn: str) -> bool:
        """Unblock a number; False if it was not blocked."""
        pipe = self._redis.pipeline()
        pipe.delete(self._keys.blocked_number(msisdn))
        pipe.zrem(self._keys.blocked_numbers(), msisdn)
        removed, _ = pipe.execute()
        return bool(removed)

    def get(self, msisdn: str) -> BlockedNumber | None:
        stored = self._redis.hgetall(self._keys.blocked_number(msisdn))
        return _entry(msisdn, stored) if stored else None

    def blocked(self, *msisdns: str) -> set[str]:
        """Which of these numbers are blocked (one round trip)."""
        batch = ReadBatch(self._redis, transaction=False)  # one command
        read = self.queue_blocked(batch, *msisdns)
        batch.run()
        return read.value

    def queue_blocked(self, batch: ReadBatch, *msisdns: str) -> Read[set[str]]:
        """`blocked` as part of a batch of reads (its answer once the batch has run)."""
        if not msisdns:
            return batch.add(0, lambda _: set())
        batch.pipeline.zmscore(self._keys.blocked_numbers(), list(msisdns))
        return batch.add(1, lambda replies: {
            m for m, score in zip(msisdns, replies[0], strict=True) if score is not None
        })

    def page(self, after: str | None = None, limit: int = 50) -> tuple[list[BlockedNumber], bool]:
        """Blocked numbers in number order after `after`; and whether more follow."""
        low = f"({after}" if after else "-"
        members = [str(m) for m in self._redis.zrangebylex(
            self._keys.blocked_numbers(), low, "+", start=0, num=limit + 1
        )]
        more = len(members) > limit
        members = members[:limit]
        pipe = self._redis.pipeline(transaction=False)
        for msisdn in members:
            pipe.hgetall(self._keys.blocked_number(msisdn))
        entries = [
            _entry(msisdn, stored)
            for msisdn, stored in zip(members, pipe.execute(), strict=True) if stored
        ]
        return entries, more


def _entry(msisdn: str, stored: Mapping[Any, Any]) -> BlockedNumber:
    reason = stored.get("reason")
    return BlockedNumber(msisdn, float(stored.get("at", 0.0)), str(reason) if reason else None)
