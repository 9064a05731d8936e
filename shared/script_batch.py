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

import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions


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


class ScriptBatch:
    """One script, called from any number of threads; concurrent calls share round trips."""

    def __init__(self, client: redis.Redis, script: str, *, replicas: int = 0,
                 wait_margin: float = 0.1) -> None:
        """`replicas`: how many replicas each round trip's WAIT asks for (0: no WAIT);
        `wait_margin`: seconds a WAIT's timeout leaves before its batch's earliest deadline."""
        self._client = client
        self._script = client.register_script(script)
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
        sha = self._script.sha
        if len(batch) == 1 and not self._replicas:
            call = batch[0]
            try:
                call.reply = self._client.evalsha(sha, *call.args)
            except redis.exceptions.NoScriptError:
                call.reply = self._client.evalsha(self._load(), *call.args)
            return
        self._answer(batch, self._pipeline(sha, batch))
        missing = [c for c in batch if isinstance(c.error, redis.exceptions.NoScriptError)]
        if missing:  # Redis restarted without its script cache: none of those ran
            for call in missing:
                call.error = None
            self._answer(missing, self._pipeline(self._load(), missing))

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

    def _pipeline(self, sha: str, batch: list[_Call]) -> list[Any]:
        # transaction=False: each script is atomic by itself; MULTI would only add commands
        pipe = self._client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(sha, *call.args)
        if self._replicas:
            # after the scripts, on their connection: WAIT counts the replicas holding them
            pipe.execute_command("WAIT", self._replicas, self._wait_ms(batch))  # type: ignore[no-untyped-call]
        return pipe.execute(raise_on_error=False)

    def _wait_ms(self, batch: list[_Call]) -> int:
        """What is left of the batch's earliest deadline, less the margin; never 0 (WAIT 0
        blocks for ever)."""
        left = min(call.deadline for call in batch) - time.monotonic() - self._wait_margin
        return max(1, int(left * 1000))

    def _load(self) -> str:
        self._script.sha = str(self._client.script_load(self._script.script))
        return self._script.sha
