"""kombu's Redis channel reuses one client for its commands (workers/broker_clients.py), on a real
redis-server: the unacked bookkeeping still happens, and a replaced pool gets a new client."""

from __future__ import annotations

from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from devtools.redis_server import RedisServer
from workers.broker_clients import reuse_channel_clients

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every synchronous client a kombu channel builds from here on."""
    reuse_channel_clients()
    reuse_channel_clients()  # idempotent
    clients: list[Any] = []
    original = kombu_redis.Channel._create_client

    def counting(self: Any, asynchronous: bool = False) -> Any:
        client = original(self, asynchronous=asynchronous)
        if not asynchronous:
            clients.append(client)
        return client

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    return clients


def test_publish_deliver_and_ack_share_one_client_and_keep_the_unacked_records(
    store: RedisServer, built: list[Any]
) -> None:
    redis_client = redis.Redis.from_url(store.url)
    with kombu.Connection(store.url) as connection:
        channel = connection.default_channel
        queue = kombu.Queue("inbound", routing_key="inbound")(channel)
        queue.declare()
        producer = kombu.Producer(channel)
        for n in range(5):
            producer.publish({"n": n}, routing_key="inbound")
        messages = [queue.get(no_ack=False) for _ in range(5)]

        assert all(m is not None for m in messages)
        assert sorted(m.payload["n"] for m in messages) == list(range(5))
        assert redis_client.hlen("unacked") == 5 and redis_client.zcard("unacked_index") == 5
        for message in messages:
            message.ack()
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0

    # five publishes, five unacked records and five acks: one client, where kombu built 15
    assert len(built) == 1


def test_a_replaced_pool_gets_a_client_of_its_own(store: RedisServer, built: list[Any]) -> None:
    with kombu.Connection(store.url) as connection:
        channel: Any = connection.default_channel
        with channel.conn_or_acquire() as first:
            first.set("k", "1")
        old_pool = channel.pool
        channel._pool = None  # as kombu's close does; the next command makes a new pool
        with channel.conn_or_acquire() as second:
            assert second.get("k") == b"1"

        assert second is not first
        assert second.connection_pool is channel.pool
        assert channel.pool is not old_pool
        with channel.conn_or_acquire() as third:
            assert third is second
    assert len(built) == 2
