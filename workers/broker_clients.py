"""One Redis client per kombu channel, not one per broker command (kombu 5.7, redis-py 8).

kombu's Redis channel builds a new `redis.Redis` for every command it makes outside its
consuming connection (`Channel.conn_or_acquire`): the unacked record of each delivered task
(`QoS.append`), each acknowledgement (`QoS.ack`), each publish, each restore sweep. redis-py
8's client copies its ~170 response callbacks into a case-insensitive dict as it is built:
0.2 ms of CPU each at a load average of 6, 0.45 ms at 14 (measured here), twice per task, on
the worker's hot path (docs/performance.md, section 2, fourth pass). The client holds no
connection of its own (each command takes one from the channel's pool and gives it back), so
one client per channel serves every caller, threads included; it is built again when the
channel's pool is replaced, so that it never outlives the pool it was made for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis as kombu_redis

_REUSED = "_smsproxy_reused_client"
_CLIENT = "_smsproxy_client"


def reuse_channel_clients() -> None:
    """Install the reuse (idempotent). Raises AttributeError if kombu no longer has the method
    it replaces: then check whether kombu still builds a client per command."""
    channel: Any = kombu_redis.Channel
    original = channel.conn_or_acquire
    if getattr(original, _REUSED, False):
        return

    @functools.wraps(original)
    @contextlib.contextmanager
    def conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # (a detached channel raises a connection error here, as before)
        cached = self.__dict__.get(_CLIENT)
        if cached is None or cached.connection_pool is not pool:
            # two threads may both build one at first: either serves, the last one stays
            cached = self.__dict__[_CLIENT] = self._create_client()
        yield cached

    setattr(conn_or_acquire, _REUSED, True)
    channel.conn_or_acquire = conn_or_acquire
