"""The pool's inventory in Redis: which virtual numbers exist, their country, state and load.

Allocation reads the per-country sorted sets (scored by live routes) that this inventory keeps;
the route table (shared/routes.py) moves the scores as routes are taken and freed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.keys import Keys
from shared.read_batch import Read, ReadBatch


@dataclass(frozen=True, slots=True)
class PoolNumber:
    """A virtual number the proxy owns, with its live-route count."""

    msisdn: str
    country: str
    routes: int
    state: str
    monthly_cost: str | None
    # the API key of the account that owns it; None for a number recorded before accounts
    # were (it belongs to the primary account)
    account: str | None = None


class PoolInventory:
    """Numbers the pool manages, allocatable (`active`) or `draining`."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def add(
        self, msisdn: str, country: str, *, monthly_cost: str | None = None,
        account: str | None = None,
    ) -> bool:
        """Make a number allocatable in its country, owned by `account` (an API key); False if
        it already was."""
        number_key = self._keys.number(msisdn)
        pipe = self._redis.pipeline()
        pipe.hsetnx(number_key, "routes", 0)
        pipe.hset(number_key, mapping={"country": country, "state": "active"})
        if account:
            pipe.hset(number_key, "account", account)
        if monthly_cost is not None:
            pipe.hset(number_key, "cost", monthly_cost)
        pipe.sadd(self._keys.pool_countries(), country)
        pipe.sadd(self._keys.pool_members(), msisdn)
        pipe.execute()
        routes = int(self._redis.hget(number_key, "routes") or 0)
        return bool(self._redis.zadd(self._keys.pool(country), {msisdn: routes}, nx=True))

    def owns(self, msisdn: str) -> bool:
        """Whether the number is one of the account's pool numbers (allocatable or draining)."""
        return bool(self._redis.sismember(self._keys.pool_members(), msisdn))

    def owned(self, *msisdns: str) -> frozenset[str]:
        """Which of the numbers are the account's pool numbers, in one round trip."""
        batch = ReadBatch(self._redis, transaction=False)  # one command
        read = self.queue_owned(batch, *msisdns)
        batch.run()
        return read.value

    def queue_owned(self, batch: ReadBatch, *msisdns: str) -> Read[frozenset[str]]:
        """`owned` as part of a batch of reads (its answer once the batch has run)."""
        if not msisdns:
            return batch.add(0, lambda _: frozenset())
        batch.pipeline.smismember(self._keys.pool_members(), list(msisdns))
        return batch.add(1, lambda replies: frozenset(
            n for n, member in zip(msisdns, replies[0], strict=True) if member
        ))

    def account_of(self, msisdn: str) -> str | None:
        """The API key of the account that owns the number (None: unknown, or not recorded)."""
        found = self._redis.hget(self._keys.number(msisdn), "account")
        return str(found) if found else None

    def set_account(self, msisdn: str, account: str) -> None:
        """Record which account owns a number the pool already holds."""
        if self._redis.exists(self._keys.number(msisdn)):
            self._redis.hset(self._keys.number(msisdn), "account", account)

    def countries(self) -> list[str]:
        return sorted(str(c) for c in self._redis.smembers(self._keys.pool_countries()))

    def numbers(self, country: str | None = None) -> list[PoolNumber]:
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
                    account=str(data["account"]) if data.get("account") else None,
                )
            )
        return sorted(found, key=lambda n: (n.country, n.msisdn))

    def size(self, country: str) -> int:
        """Allocatable numbers of a country (draining ones excluded)."""
        return int(self._redis.zcard(self._keys.pool(country)))

    def drain(self, msisdn: str) -> None:
        """No new conversations on this number; its live ones carry on."""
        country = self._redis.hget(self._keys.number(msisdn), "country")
        pipe = self._redis.pipeline()
        pipe.hset(self._keys.number(msisdn), "state", "draining")
        if country:
            pipe.zrem(self._keys.pool(str(country)), msisdn)
        pipe.execute()

    def forget(self, msisdn: str) -> None:
        """Drop a number from the pool entirely (cancelled, or no longer owned)."""
        country = self._redis.hget(self._keys.number(msisdn), "country")
        pipe = self._redis.pipeline()
        if country:
            pipe.zrem(self._keys.pool(str(country)), msisdn)
        pipe.srem(self._keys.pool_members(), msisdn)
        pipe.delete(self._keys.number(msisdn))
        pipe.execute()
