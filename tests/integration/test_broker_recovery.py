"""A worker's broker connection breaks with a delivery in hand: cleaning it up must not raise
anything but a connection error (workers/broker_recovery.py).

The steps are Celery 5.7's consumer's after a lost connection (`collect()`, then `close()` under
`ignore_errors`), on kombu's Redis transport, against a real redis-server that is stopped: a
task channel holding an unacknowledged delivery with its BRPOP outstanding, and a remote-control
channel with an auto-delete fanout queue, whose close fails first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kombu
import pytest
import redis
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from devtools.redis_server import RedisServer
from workers.broker_recovery import guard_detached_channels

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "broker").start()
    try:
        yield server
    finally:
        server.stop()


def _lose_connection_with_a_delivery_in_hand(server: RedisServer) -> kombu.Connection:
    connection = kombu.Connection(server.url)
    tasks = connection.default_channel
    queue = kombu.Queue("inbound", routing_key="inbound")(tasks)
    queue.declare()
    kombu.Producer(tasks).publish({"n": 1}, routing_key="inbound")
    assert queue.get(no_ack=False) is not None  # in hand: recorded in `unacked`
    tasks.basic_consume("inbound", False, lambda message: None, "tasks")
    control = connection.channel()
    fanout = kombu.Queue("control", kombu.Exchange("control", "fanout"), auto_delete=True)
    fanout(control).declare()
    control.basic_consume("control", True, lambda message: None, "control")
    try:
        connection.drain_events(timeout=0.2)  # the consumer's BRPOP is now outstanding
    except TimeoutError:
        pass
    server.stop()
    try:
        connection.collect(socket_timeout=1)
    except Exception:  # noqa: BLE001, S110 (Celery ignores whatever collect raises)
        pass
    return connection


def test_unguarded_kombu_raises_attribute_error(server: RedisServer, monkeypatch) -> None:
    """The bug the guard is for (if this starts passing, kombu fixed it: drop the guard)."""
    monkeypatch.setattr(kombu_redis.Channel, "_connparams", _unguarded())
    connection = _lose_connection_with_a_delivery_in_hand(server)
    with pytest.raises(AttributeError, match="hostname"):
        ignore_errors(connection, connection.close)


def test_guarded_close_is_a_connection_error_and_the_delivery_stays_restorable(
    server: RedisServer,
) -> None:
    guard_detached_channels()
    guard_detached_channels()  # idempotent
    connection = _lose_connection_with_a_delivery_in_hand(server)
    ignore_errors(connection, connection.close)  # raises nothing: the consumer reconnects
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        # still in `unacked`: the restore sweep hands it out again after the visibility timeout
        assert client.hlen("unacked") == 1
    finally:
        client.close()


def _unguarded():  # type: ignore[no-untyped-def]
    method = kombu_redis.Channel._connparams
    return getattr(method, "__wrapped__", method)
