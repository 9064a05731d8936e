"""What /metrics reads at scrape time: queues, outbox, sends in doubt, workers, the pool.

Every reading is a cheap command on a known key (LLEN, LINDEX, ZCARD, ZCOUNT, HLEN), sent in
one pipeline; nothing scans the keyspace.

Workers alive come from heartbeats: each worker process adds its name to one sorted set with
the time, every HEARTBEAT_SECONDS, from a thread of its own. Chosen over Celery's events
because reading them needs a long-lived event consumer (web has none: it is request-scoped),
and over a key per worker with a TTL because one sorted set is counted with one ZCOUNT instead
of a keyspace scan. A heartbeat says the process lives, not that it consumes (a worker stuck
after a Redis reconnect keeps beating: celery#8030); the stuck-consumer alert watches tasks
finished against a non-empty queue for that.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from shared.broker_messages import published_at, queue_lists
from shared.jobs import Queue
from shared.keys import Keys
from shared.pool_inventory import PoolInventory

HEARTBEAT_SECONDS = 10.0
# A worker missing three heartbeats in a row is counted dead; a dead one is forgotten later.
ALIVE_WITHIN_SECONDS = 3 * HEARTBEAT_SECONDS
FORGET_AFTER_SECONDS = 3600.0
# A send met in doubt and not settled for this long is dropped from the count: its record's
# own expiry and the sweeper deal with it (a bound, so the set cannot grow without end).
IN_DOUBT_FORGET_SECONDS = 24 * 3600.0


class Heartbeats:
    """Worker processes say they live; /metrics counts those heard from recently."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()

    def beat(self, worker: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._keys.worker_heartbeats(), {worker: now})
        pipe.zremrangebyscore(self._keys.worker_heartbeats(), "-inf", now - FORGET_AFTER_SECONDS)
        pipe.execute()

    def gone(self, worker: str) -> None:
        """A worker shutting down cleanly leaves the count at once."""
        self._redis.zrem(self._keys.worker_heartbeats(), worker)


class Gauges:
    """Readings of the store (and of the broker, when it is the same Redis or another one)."""

    def __init__(
        self,
        store: redis.Redis,
        broker: redis.Redis | None,
        inventory: PoolInventory,
        pool_targets: Mapping[str, int],
        transport_options: Mapping[str, Any] | None = None,
        keys: Keys | None = None,
        depths: Mapping[str, int] | None = None,
    ) -> None:
        """`depths`: the queues' depths as a broker that is no Redis (RabbitMQ) counts them."""
        self._store = store
        self._depths = depths
        self._broker = broker
        self._inventory = inventory
        self._targets = pool_targets
        self._keys = keys or Keys()
        self._lists = {q.value: queue_lists(q.value, transport_options) for q in Queue}

    def collect(self, now: float | None = None) -> Iterator[Metric]:
        yield from self.operational(now)
        yield from self._pool()

    def operational(self, now: float | None = None) -> Iterator[Metric]:
        """Queues, outbox, sends in doubt and workers alive: all but the pool (which the
        console reads in more detail itself)."""
        now = time.time() if now is None else now
        yield from self._queues(now)
        yield from self._store_readings(now)

    def _queues(self, now: float) -> Iterator[Metric]:
        depth = GaugeMetricFamily("smsproxy_queue_depth", "jobs waiting in a broker queue",
                                  labels=["queue"])
        age = GaugeMetricFamily(
            "smsproxy_queue_oldest_age_seconds",
            "how long the oldest waiting job of a queue has waited since it was published",
            labels=["queue"],
        )
        if self._broker is None:
            # RabbitMQ: its counts, when read; the oldest job's age cannot be read without
            # taking the message, so none is reported
            for queue, count in (self._depths or {}).items():
                depth.add_metric([queue], count)
            yield depth
            yield age
            return
        pipe = self._broker.pipeline(transaction=False)
        order: list[tuple[str, str]] = []
        for queue, lists in self._lists.items():
            for name in lists:
                pipe.llen(name)
                pipe.lindex(name, -1)  # LPUSH in, BRPOP out: the oldest is at the tail
                order.append((queue, name))
        replies: Sequence[Any] = pipe.execute()
        depths: dict[str, int] = dict.fromkeys(self._lists, 0)
        ages: dict[str, float] = dict.fromkeys(self._lists, 0.0)
        for index, (queue, _) in enumerate(order):
            length, oldest = replies[2 * index], replies[2 * index + 1]
            depths[queue] += int(length or 0)
            when = published_at(oldest) if oldest else None
            if when is not None:
                ages[queue] = max(ages[queue], now - when)
        for queue in self._lists:
            depth.add_metric([queue], depths[queue])
            age.add_metric([queue], max(0.0, ages[queue]))
        yield depth
        yield age

    def _store_readings(self, now: float) -> Iterator[Metric]:
        keys = self._keys
        pipe = self._store.pipeline(transaction=False)
        pipe.hlen(keys.pending_jobs())
        pipe.zcard(keys.outbound_open())
        pipe.zremrangebyscore(keys.outbound_in_doubt(), "-inf", now - IN_DOUBT_FORGET_SECONDS)
        pipe.zcard(keys.outbound_in_doubt())
        pipe.zcount(keys.worker_heartbeats(), now - ALIVE_WITHIN_SECONDS, "+inf")
        outbox, owed, _, doubt, alive = pipe.execute()
        yield GaugeMetricFamily("smsproxy_outbox_jobs", "jobs published and not yet settled "
                                "by their task (the outbox)", value=int(outbox))
        yield GaugeMetricFamily("smsproxy_outbound_open", "sends owed and not yet finished",
                                value=int(owed))
        yield GaugeMetricFamily("smsproxy_outbound_in_doubt", "sends whose Vonage call may or "
                                "may not have happened (a held lease), waiting to be settled",
                                value=int(doubt))
        yield GaugeMetricFamily("smsproxy_workers_alive", "worker processes heard from in the "
                                f"last {ALIVE_WITHIN_SECONDS:.0f} s", value=int(alive))

    def _pool(self) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "smsproxy_pool_numbers", "numbers in the pool", labels=["country", "state"]
        )
        free = GaugeMetricFamily(
            "smsproxy_pool_free_capacity",
            "allocatable numbers: the most live conversations one person can have",
            labels=["country"],
        )
        routes = GaugeMetricFamily(
            "smsproxy_pool_live_routes", "live routes on pool numbers", labels=["country"]
        )
        target = GaugeMetricFamily(
            "smsproxy_pool_target_numbers", "the pool's target per country "
            "(SMSPROXY_POOL_TARGETS)", labels=["country"],
        )
        numbers = self._inventory.numbers()
        countries = sorted(set(self._inventory.countries()) | set(self._targets))
        for country in countries:
            mine = [n for n in numbers if n.country == country]
            for state in ("active", "draining"):
                size.add_metric([country, state], sum(1 for n in mine if n.state == state))
            free.add_metric([country], self._inventory.size(country))
            routes.add_metric([country], sum(n.routes for n in mine))
            target.add_metric([country], self._targets.get(country, 0))
        yield size
        yield free
        yield routes
        yield target


def store_up(up: bool) -> Metric:
    return GaugeMetricFamily("smsproxy_store_up", "1 when /metrics could read the store "
                             "(Redis); 0 means the counters below are missing", value=int(up))
