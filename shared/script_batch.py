"""Calls of one Lua script from concurrent requests, sent to Redis together (a group commit).

A webhook is acknowledged once its enqueue script has answered: one round trip to Redis. Under
load each of a web process's threads (or greenlets) made that round trip on its own, paying
redis-py's whole per-call path every time: a pooled connection checked out and polled for stale
data, the command written, the reply read, and, in a thread, the GIL won back after each wait.
That path, not the script, was most of what the webhook cost above a bare Flask handler
(docs/performance.md, section 1).

Here the first caller to find nothing in flight sends its call at once, alone: a lone request
waits for nothing more than before. Callers that arrive while a call is in flight queue up; when
it returns, the first of them sends everything that queued, as one pipeline, on one connection.
Each caller still returns only once Redis has answered its own call, with its own reply or
error: the acknowledgement is as durable as before. A queued call waits for at most the round
trip in flight and its own, each bounded by the client's socket timeout; when the one in flight
times out (a hung Redis), the calls queued behind it fail at once instead of waiting a timeout
of their own, unsent.

No timer and no batch size are tuned: a batch is whatever arrived during one round trip.

With `replicas` (SMSPROXY_MIN_REPLICAS_ACKED), each round trip ends with one `WAIT`: it counts
the replicas holding every write its connection made, so one `WAIT` after a batch's scripts, on
their connection, covers them all. Its timeout is what is left of the batch's earliest deadline,
less a margin, so that its reply beats the socket's timeout.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions
from redis.connection import AbstractConnection

from shared.tracing import redis_span


def wait_timeout_ms(deadline: float, margin: float) -> int:
    """A WAIT's timeout: what is left until `deadline` (time.monotonic()), less `margin` so that
    its reply beats the socket's timeout; never 0 (WAIT 0 blocks for ever)."""
    return max(1, int((deadline - time.monotonic() - margin) * 1000))


class NotSent(redis.exceptions.ConnectionError):
    """The call was never written to Redis: the round trip before it timed out."""


def _for_another(exc: BaseException) -> redis.exceptions.RedisError:
    """The error of a round trip for another caller of its batch: an instance of its own (each
    thread raises it with its own traceback), a RedisError whatever it was (the caller answers
    503 to it, as to Redis failing)."""
    if isinstance(exc, redis.exceptions.RedisError):
        try:
            own = type(exc)(*exc.args)
        except Exception:  # noqa: BLE001 (an exception type with another constructor)
            own = redis.exceptions.ConnectionError(str(exc))
    else:
        own = redis.exceptions.ConnectionError(f"the batched call failed: {type(exc).__name__}")
    own.__cause__ = exc
    return own


class _Call:
    __slots__ = ("acked", "args", "deadline", "done", "error", "reply", "next_batch")

    def __init__(self, args: tuple[Any, ...], deadline: float) -> None:
        self.args = args
        self.deadline = deadline
        # held until the call has its answer, or leads the next batch (a lock as a latch: the
        # lightest primitive that blocks; gevent's monkey-patching makes it a greenlet's)
        self.done = threading.Lock()
        self.done.acquire()
        self.reply: Any = None
        self.acked = 0  # replicas that had the call's writes, by its round trip's WAIT
        self.error: BaseException | None = None
        self.next_batch: list[_Call] | None = None

    def outcome(self) -> tuple[Any, int]:
        if self.error is not None:
            raise self.error
        return self.reply, self.acked


class _Line:
    """The one connection a ScriptBatch's round trips take, kept out of the client's pool.

    A ScriptBatch has one round trip in flight at a time, so one connection serves it. Through
    the client, each call also paid redis-py 8.1's per-call path: a connection checked out of
    the pool and polled for stale data, released again, and the retry and metrics wrappers
    around the command: 30 µs of CPU a lone call against 9 µs for the round trip alone
    (measured in one process, docs/performance.md, section 1). What the client's connections
    do themselves stays: their health check after an idle spell, Sentinel's lookup of the
    master on (re)connecting, and the client's retry policy (its Retry object); with tracing on,
    a span per round trip as the Redis instrumentation makes them (a batch's lands in the trace
    of the request whose thread sends it). A connection that failed in any way is closed before
    it is used again: it never holds half a reply.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: AbstractConnection | None = None
        self._pid = os.getpid()

    def round_trip(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each command's reply, an error reply as its exception; raises what the connection
        raises (its retry policy spent)."""
        connection = self._checked_out()
        try:
            # the span the Redis instrumentation would have made through the client
            with redis_span([str(command[0]) for command in commands]):
                return connection.retry.call_with_retry(
                    lambda: self._exchange(connection, commands),
                    lambda _error: connection.disconnect(),  # type: ignore[no-untyped-call]
                )
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # the next starts clean
            raise

    @staticmethod
    def _exchange(connection: AbstractConnection, commands: Sequence[tuple[Any, ...]]
                  ) -> list[Any]:
        # connect() first (nothing when connected): behind Sentinel it asks where the master
        # is, where send_packed_command would reconnect to the address it had, a dead or
        # demoted master's
        connection.connect()  # type: ignore[no-untyped-call]
        connection.send_packed_command(  # type: ignore[no-untyped-call]
            connection.pack_commands(commands))  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.exceptions.ResponseError as error:  # that command's, not the link's
                replies.append(error)
        return replies

    def _checked_out(self) -> AbstractConnection:
        # a connection made before a fork is the parent's socket: the child takes its own
        if self._connection is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._connection = self._pool.get_connection()
        return self._connection


class ScriptBatch:
    """One script, called from any number of threads; concurrent calls share round trips."""

    def __init__(self, client: redis.Redis, script: str, *, replicas: int = 0,
                 wait_margin: float = 0.1) -> None:
        """`replicas`: how many replicas each round trip's WAIT asks for (0: no WAIT);
        `wait_margin`: seconds a WAIT's timeout leaves before its batch's earliest deadline."""
        self._script = client.register_script(script)
        self._line = _Line(client)
        self._replicas = replicas
        self._wait_margin = wait_margin
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._in_flight = False

    def __call__(self, keys: Sequence[str], args: Sequence[Any],
                 deadline: float) -> tuple[Any, int]:
        """The script's reply to this call, and how many replicas had its writes in time (0
        without `replicas`); raises what redis-py raises for it. `deadline` (time.monotonic())
        bounds the WAIT (a socket timeout bounds each round trip anyway)."""
        call = _Call((len(keys), *keys, *args), deadline)
        with self._lock:
            if self._in_flight:
                self._queued.append(call)
                batch = None
            else:
                self._in_flight = True
                batch = [call]
        if batch is None:
            call.done.acquire()  # answered, or handed the next batch to send
            if call.next_batch is None:
                return call.outcome()
            batch = call.next_batch
        self._send(batch)
        return call.outcome()

    def _send(self, batch: list[_Call]) -> None:
        """Send one batch, then hand what queued meanwhile to its first caller, and answer.

        Whatever happens in the round trip, the queue moves on and every caller of the batch
        wakes: a caller left waiting would hold a web thread, and every later call, for ever.
        """
        timed_out = False
        try:
            self._run(batch)
        except BaseException as exc:  # this thread's own caller re-raises it (outcome)
            batch[0].error = exc
            for call in batch[1:]:
                call.error = _for_another(exc)
            timed_out = isinstance(exc, redis.exceptions.TimeoutError)
        finally:
            with self._lock:
                queued, self._queued = self._queued, []
                if not queued or timed_out:
                    self._in_flight = False
            if queued and timed_out:
                for call in queued:
                    call.error = NotSent("not sent: the Redis call before it timed out")
                    call.done.release()
            elif queued:
                queued[0].next_batch = queued
                queued[0].done.release()  # the next round trip starts before these are answered
            for call in batch[1:]:
                call.done.release()  # batch[0] is this thread's own call

    def _run(self, batch: list[_Call]) -> None:
        self._answer(batch, self._round_trip(self._script.sha, batch))
        missing = [c for c in batch if isinstance(c.error, redis.exceptions.NoScriptError)]
        if missing:  # Redis restarted without its script cache: none of those ran
            for call in missing:
                call.error = None
            self._answer(missing, self._round_trip(self._load(), missing))

    def _answer(self, batch: list[_Call], replies: list[Any]) -> None:
        if self._replicas:
            acked = replies.pop()
            for call in batch:
                if isinstance(acked, Exception):  # the scripts ran; whether replicas have
                    call.error = _for_another(acked)  # them is unknown: a failure (503)
                else:
                    call.acked = int(acked)
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                call.error = reply
            elif call.error is None:
                call.reply = reply

    def _round_trip(self, sha: str, batch: list[_Call]) -> list[Any]:
        # no MULTI: each script is atomic by itself; MULTI would only add commands
        commands: list[tuple[Any, ...]] = [("EVALSHA", sha, *call.args) for call in batch]
        if self._replicas:
            # after the scripts, on their connection: WAIT counts the replicas holding them
            commands.append(("WAIT", self._replicas, self._wait_ms(batch)))
        return self._line.round_trip(commands)

    def _wait_ms(self, batch: list[_Call]) -> int:
        return wait_timeout_ms(min(call.deadline for call in batch), self._wait_margin)

    def _load(self) -> str:
        # on the connection the calls run on: behind Sentinel, the pool's could name another
        # server for a moment
        [sha] = self._line.round_trip([("SCRIPT", "LOAD", self._script.script)])
        if isinstance(sha, Exception):
            raise sha
        self._script.sha = str(sha)
        return self._script.sha
