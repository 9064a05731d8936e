"""Reads of several stores in one Redis round trip.

Each store queues its commands on the batch's pipeline and says how its replies are read
(`ReadBatch.add`); the caller runs the batch once and takes each store's answer. For the
inbound path's reads that all follow the conversation's (opt-out states, pool membership,
blocked ends): one round trip where there were three (docs/performance.md, section 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis

T = TypeVar("T")


class Read(Generic[T]):
    """One store's part of a batch; its answer once the batch has run."""

    def __init__(self, count: int, parse: Callable[[list[Any]], T]) -> None:
        self._count = count
        self._parse = parse
        self._done = False
        self._value: T | None = None

    @property
    def value(self) -> T:
        if not self._done:
            raise RuntimeError("the batch holding this read has not run")
        return self._value  # type: ignore[return-value]  # T itself may admit None

    def _settle(self, replies: list[Any]) -> None:
        self._value = self._parse(replies)
        self._done = True


class ReadBatch:
    """Commands queued by several stores, sent together: by default in MULTI/EXEC, so that
    the answers are of one moment, as each store's own transaction gave them before.

    The stores must be over the batch's client: one Redis, whose keys they all name.
    """

    def __init__(self, client: redis.Redis, *, transaction: bool = True) -> None:
        # without a transaction, a batch of one command is that command alone
        self._pipe = client.pipeline(transaction=transaction)
        self._reads: list[Read[Any]] = []

    @property
    def pipeline(self) -> Any:
        """Where a store queues its commands, then calls `add` with how many it queued."""
        return self._pipe

    def add(self, count: int, parse: Callable[[list[Any]], T]) -> Read[T]:
        """The last `count` commands queued are one read; `parse` turns their replies into
        its answer."""
        read: Read[T] = Read(count, parse)
        self._reads.append(read)
        return read

    def run(self) -> None:
        """Send every queued command in one round trip (none when nothing was queued) and
        settle each read."""
        queued = sum(read._count for read in self._reads)
        if len(self._pipe) != queued:
            raise RuntimeError(f"{len(self._pipe)} commands queued, reads account for {queued}")
        replies = self._pipe.execute() if queued else []
        at = 0
        for read in self._reads:
            read._settle(replies[at:at + read._count])
            at += read._count
