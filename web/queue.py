"""The one door from web/ to the broker: publish a job by task name, bounded in time.

A webhook may answer 2xx only once its job is in the broker, and must answer 503 quickly when
the broker is down or hung, so that Vonage retries. Celery and kombu each have retry loops whose
defaults ignore a caller's deadline (kombu 5.7):

* `Producer.publish(retry=True)` wraps the publish in `Connection.ensure` (kombu/messaging.py
  349-351), which on a connection error reconnects through `_ensure_connection` *without* a
  timeout (kombu/connection.py 654-660) and replays the publish; a command that timed out may
  already have been executed by Redis, so a replay can enqueue the job twice, and each replay
  waits a whole socket timeout on a hung Redis (measured: 4 x the timeout).
* `retry_over_time` checks its deadline only between attempts and then sleeps a full interval
  (kombu/utils/functional.py 328-351): its `timeout` is not a bound.
* `Connection.default_channel` reconnects with `_extract_failover_opts()`: `max_retries` from
  the transport options, otherwise forever until `connect_timeout` plus an interval of up to
  30 s (kombu/connection.py 988-1003, 1052-1053).
* `app.send_task` waits forever for a free producer when `broker_pool_acquire_timeout` is None,
  the default (celery/app/base.py 1371, celery/app/defaults.py 102).

So the publish runs with kombu's retries off (`retry=False`, `max_retries=0`), every socket
operation bounded by the timeout, and the (few, quick) retries are ours, under one deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis.exceptions
from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from shared.jobs import QUEUE_OF, TaskName
from shared.settings import Settings

log = logging.getLogger(__name__)

# A socket timeout of 0 would make redis-py's sockets non-blocking, not fast.
MIN_TIMEOUT_SECONDS = 0.1
# Pauses between attempts after a refused connection (a restarting or failing-over Redis);
# cut short by the deadline. Small: a thread waiting here is a web thread not serving.
RETRY_PAUSES_SECONDS = (0.05, 0.15, 0.3, 0.5)

_BROKER_ERRORS = (OperationalError, KombuError, redis.exceptions.RedisError, OSError)


class QueueUnavailable(Exception):
    """The broker did not take the job in time; the caller answers 503 so the sender retries.

    `maybe_published` is True when the broker may yet have the job: a command was written and
    its reply never came (a hung Redis executes it when it resumes). The caller should then keep
    its dedupe claim rather than invite an immediate second copy.
    """

    def __init__(self, task: str, *, maybe_published: bool = False) -> None:
        super().__init__(task)
        self.maybe_published = maybe_published


class Publisher:
    """Sends tasks by name (web/ never imports workers/), failing fast when the broker is down."""

    def __init__(self, settings: Settings) -> None:
        timeout = max(settings.publish_timeout_seconds, MIN_TIMEOUT_SECONDS)
        self._timeout = timeout
        self._app = Celery("smsproxy-web", broker=settings.broker_url, set_as_current=False)
        self._app.conf.update(
            # Consumer-side settings; a producer-only app states them so nothing waits on them.
            broker_connection_retry=False,
            broker_connection_retry_on_startup=False,
            # kombu Connection.connect_timeout: the `timeout` of its reconnect loops.
            broker_connection_timeout=timeout,
            # A thread that finds every pooled producer busy (each stuck on a hung Redis for at
            # most `timeout`) gives up instead of waiting forever (the default, None).
            broker_pool_acquire_timeout=timeout,
            broker_transport_options={
                # redis-py's own socket bounds: a hung Redis (connection open, nothing
                # answering) costs one timeout per command instead of forever.
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                # 0: `default_channel`'s reconnect loop makes one attempt and raises
                # (retry_over_time raises once retries >= max_retries); we retry, bounded.
                "max_retries": 0,
                # Never let redis-py replay a command that timed out (it may have run).
                "retry_on_timeout": False,
            },
            task_serializer="json",
        )

    def publish(self, task: TaskName, payload: Any = None) -> None:
        """Put one job on its queue; raises QueueUnavailable if the broker did not take it.

        `payload` is the task's one argument (None for tasks that take none). Returns only once
        Redis has answered the LPUSH: the job is in the broker.
        """
        deadline = time.monotonic() + self._timeout
        pauses = iter(RETRY_PAUSES_SECONDS)
        while True:
            try:
                self._app.send_task(
                    task.value,
                    args=[] if payload is None else [payload],
                    queue=QUEUE_OF[task].value,
                    retry=False,  # kombu's ensure() would replay unbounded; see module doc
                )
                return
            except _BROKER_ERRORS as exc:
                maybe_published = _timed_out(exc)
                pause = next(pauses, None)
                # A hung broker is not retried: another attempt costs another whole timeout,
                # and replaying a command Redis may yet execute would enqueue the job twice.
                if maybe_published or pause is None or time.monotonic() + pause >= deadline:
                    log.warning(
                        "broker unavailable for %s: %s%s", task.value, type(exc).__name__,
                        " (timed out; the job may still arrive)" if maybe_published else "",
                    )
                    raise QueueUnavailable(task.value, maybe_published=maybe_published) from exc
                time.sleep(pause)

    def ping(self) -> bool:
        """Whether the broker answers now (for /readyz), within the publish timeout."""
        try:
            with self._app.connection_for_write() as connection:
                # max_retries=0: one attempt; the default interval_start would sleep 2 s.
                connection.ensure_connection(max_retries=0)
            return True
        except _BROKER_ERRORS:
            return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from (kombu re-raises redis-py's errors as its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _timed_out(exc: BaseException) -> bool:
    """Whether Redis stopped answering (rather than refusing): the outcome is then unknown."""
    return any(
        isinstance(cause, redis.exceptions.TimeoutError | TimeoutError)  # socket.timeout too
        for cause in _causes(exc)
    )
