"""The one door from web/ to the broker: publish a job by task name, bounded in time.

A webhook may answer 2xx only once its job is in the broker, and must answer 503 quickly when
the broker is down or hung, so that Vonage retries. Celery and kombu each have retry loops whose
defaults ignore a caller's deadline (kombu 5.7):

* `Producer.publish(retry=True)` wraps the publish in `Connection.ensure`, which on a
  connection error reconnects with no time limit and replays the publish; a command that timed
  out may already have been executed by Redis, so a replay can enqueue the job twice, and each
  replay waits a whole socket timeout on a hung Redis (measured: 4 x the timeout).
* `retry_over_time` checks its deadline only between attempts and then sleeps a full interval:
  its `timeout` is not a bound.
* `Connection.default_channel` reconnects with the failover options: `max_retries` from the
  transport options, otherwise forever, until `connect_timeout` plus an interval of up to 30 s.
* `app.send_task` waits forever for a free producer when `broker_pool_acquire_timeout` is None,
  Celery's default.

So the publish runs with kombu's retries off (`retry=False`, `max_retries=0`), every socket
operation bounded by the timeout, and the (few, quick) retries are ours, under one deadline.

When the broker is the store's Redis (the two URLs name the same database; the default), the door
skips kombu's connection altogether: shared/broker_messages.py builds the very message Celery
would write (with Celery's and kombu's own code; a test keeps it equal to `app.send_task`'s),
and it goes on its queue with one LPUSH; for a webhook, dedupe, enqueue, marker, counter and
outbox entry run as one Lua script: one round trip, and all or nothing, so a Redis that hangs
mid-call can neither lose the message nor queue it twice. Either way the task's argument never
reaches `argsrepr`, which monitoring tools show: it holds phone numbers.

When the broker is RabbitMQ (`amqp://`), the same message goes through kombu on a pooled
connection with publisher confirms (shared/amqp_broker.py): `publish` returns only once RabbitMQ
confirmed it, and a refusal, a nack or no confirm within the timeout is QueueUnavailable (503).
The dedupe claim and the outbox entry stay in the store's Redis (the two-step webhook path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import redis
import redis.exceptions
from amqp.exceptions import AMQPError
from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from shared.amqp_broker import AmqpBroker, is_amqp
from shared.broker_messages import (
    BrokerMessage,
    BrokerMessages,
    same_redis_database,
    send_task_options,
)
from shared.jobs import TaskName
from shared.keys import Keys
from shared.metrics import WEBHOOKS, series_key
from shared.outbox import TRACK_LUA, Outbox, job_name, outbox_entry, republish_after
from shared.script_batch import ScriptBatch, wait_timeout_ms
from shared.sentinel import celery_broker
from shared.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# A socket timeout of 0 would make redis-py's sockets non-blocking, not fast.
MIN_TIMEOUT_SECONDS = 0.1
# Pauses between attempts after a refused connection (a restarting or failing-over Redis);
# cut short by the deadline. Small: a thread waiting here is a web thread not serving.
RETRY_PAUSES_SECONDS = (0.05, 0.15, 0.3, 0.5)
# Left of the publish timeout after a WAIT's own timeout: its reply must come before the
# socket's timeout, or a late answer would look like a hung Redis.
WAIT_MARGIN_SECONDS = 0.1
# How long /readyz reuses the answer of a broker apart from the store (a new connection each).
BROKER_CHECK_SECONDS = 2.0

_BROKER_ERRORS = (OperationalError, KombuError, AMQPError, redis.exceptions.RedisError, OSError)


class QueueUnavailable(Exception):
    """The broker did not take the job in time; the caller answers 503 so the sender retries.

    `maybe_published` is True when the broker may yet have the job: a command was written and
    its reply never came (a hung Redis executes it when it resumes). The caller should then keep
    its dedupe claim rather than invite an immediate second copy.
    """

    def __init__(self, task: str, *, maybe_published: bool = False) -> None:
        super().__init__(task)
        self.maybe_published = maybe_published


class WebhookOutcome(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"  # a two-step claim of another attempt is still held


# KEYS: dedupe marker, queue list, metrics hash, pending jobs hash, pending due zset.
# ARGV: message, marker TTL, counter names, job name, seconds until a re-publish is due,
# the outbox entry's head (the entry is the head and the message: sending the message once
# saves a kilobyte or so per webhook).
# The job is also kept in an outbox until a worker settles it: kombu's Redis transport pops a
# message before it records it as unacknowledged, so a worker dying in between loses it
# (celery#7950); the sweeper re-publishes what stays unsettled (shared/outbox.py).
_ENQUEUE_ONCE = TRACK_LUA + """
local seen = redis.call('GET', KEYS[1])
if seen then
  if seen == 'claimed' then return 'in_progress' end
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return 'duplicate'
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], 'queued', 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
track(KEYS[4], KEYS[5], ARGV[5], ARGV[7] .. ARGV[1], ARGV[6])
return 'queued'
"""


class Publisher:
    """Sends tasks by name (web/ never imports workers/), failing fast when the broker is down."""

    def __init__(self, settings: Settings, store: redis.Redis | None = None) -> None:
        """`store` is the client of REDIS_URL; without it, every job goes through Celery."""
        timeout = max(settings.publish_timeout_seconds, MIN_TIMEOUT_SECONDS)
        self._timeout = timeout
        try:
            same_database = same_redis_database(settings.redis_url, settings.broker_url)
        except ValueError as exc:
            raise SettingsError(f"REDIS_URL or CELERY_BROKER_URL: {exc}") from None
        # The direct path needs the broker to be the store's Redis, down to the database.
        self._direct = store if store is not None and same_database else None
        self._replicas = settings.min_replicas_acked
        # concurrent webhooks' calls of the script share round trips (shared/script_batch.py);
        # with replicas required, each round trip ends with the one WAIT that covers it
        self._enqueue = (
            ScriptBatch(self._direct, _ENQUEUE_ONCE, replicas=self._replicas,
                        wait_margin=WAIT_MARGIN_SECONDS)
            if self._direct is not None else None
        )
        self._keys = Keys()
        # the counter fields of each webhook kind, spelled once
        self._outcome_fields: dict[str, tuple[str, str]] = {}
        self._ping_lock = threading.Lock()
        self._pinged: tuple[float, bool] | None = None  # (when, whether the broker answered)
        self._republish_after = republish_after(settings)
        self._outbox = Outbox(store, settings) if store is not None else None
        # RabbitMQ: our own confirmed publish on pooled connections (shared/amqp_broker.py);
        # Celery's send_task would neither confirm nor bound the wait for one.
        self._amqp = (
            AmqpBroker(settings.broker_url, timeout) if is_amqp(settings.broker_url) else None
        )
        try:
            broker_url, sentinel_options = celery_broker(settings.broker_url)
        except ValueError as exc:
            raise SettingsError(f"CELERY_BROKER_URL: {exc}") from None
        self._app = Celery("smsproxy-web", broker=broker_url, set_as_current=False)
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
                **sentinel_options,
            },
            task_serializer="json",
        )
        # after the configuration: messages follow its serializer and transport options
        self._messages = BrokerMessages(self._app)

    @property
    def broker_is_store(self) -> bool:
        """Whether the broker is the store's Redis (and its client): one PING checks both."""
        return self._direct is not None

    @property
    def atomic_webhooks(self) -> bool:
        """Whether `enqueue_webhook` is available (the broker is the store's Redis)."""
        return self._enqueue is not None

    def enqueue_webhook(
        self, kind: str, message_id: str, task: TaskName, payload: Any, dedupe_ttl: int
    ) -> WebhookOutcome:
        """Dedupe on messageId and enqueue, as one step; raises QueueUnavailable on failure.

        With SMSPROXY_MIN_REPLICAS_ACKED, a WAIT follows the script on its connection: it
        counts the replicas that have the script's dedupe marker, queue push and outbox entry
        (one replicated transaction). A duplicate waits too: its counter increment comes after
        the first copy's writes, so a retry of a webhook answered 503 here is acknowledged only
        once a replica has the first copy's job.
        """
        if self._enqueue is None:
            raise RuntimeError("the broker is not the store's Redis: use the two-step path")
        deadline = time.monotonic() + self._timeout
        message = self._messages.build(task, payload)
        keys = [self._keys.dedupe(kind, message_id), message.queue,
                self._keys.metrics(), self._keys.pending_jobs(), self._keys.pending_due()]
        counted = self._outcome_fields.get(kind)
        if counted is None:
            counted = self._outcome_fields[kind] = (
                series_key(WEBHOOKS, {"kind": kind, "outcome": "accepted"}),
                series_key(WEBHOOKS, {"kind": kind, "outcome": "duplicate"}))
        args: list[Any] = [message.body, dedupe_ttl, *counted,
                           job_name(kind, message_id), self._republish_after,
                           outbox_entry(message.queue, "")]
        try:
            outcome, acked = self._enqueue(keys, args, deadline)
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(task, exc) from exc
        if acked < self._replicas:
            # The master has the job, its replicas may not: a failover now would lose it. 503,
            # so Vonage retries; the retry finds it queued (a duplicate) and waits again, or,
            # after a failover, queues it on the promoted replica.
            log.warning("webhook job for %s reached %d of %d replicas in time",
                        task.value, acked, self._replicas)
            raise QueueUnavailable(task.value, maybe_published=True)
        return WebhookOutcome(str(outcome))

    def publish(self, task: TaskName, payload: Any = None, *, job: str | None = None) -> None:
        """Put one job on its queue; raises QueueUnavailable if the broker did not take it.

        `payload` is the task's one argument (None for tasks that take none). `job` names the
        job in the outbox (shared/outbox.py), which keeps it until its task settles it: with
        the broker in the store's Redis, the job and its entry are written in one step; with a
        broker apart, the entry is written first (a job is never published without one), and
        dropped again when the broker surely did not take the job. Returns only once the broker
        has answered: the job is in it.
        """
        deadline = time.monotonic() + self._timeout
        message = self._messages.build(task, payload)
        if self._direct is not None:
            try:
                if job is not None and self._outbox is not None:
                    acked = self._outbox.publish(job, message, replicas=self._replicas,
                                                 wait_ms=self._wait_ms(deadline))
                elif self._replicas:
                    pipe = self._direct.pipeline(transaction=False)
                    pipe.lpush(message.queue, message.body)
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "WAIT", self._replicas, self._wait_ms(deadline))
                    acked = int(pipe.execute()[1])
                else:
                    self._direct.lpush(message.queue, message.body)
                    acked = 0
            except redis.exceptions.RedisError as exc:
                raise self._unavailable(task, exc) from exc
            if acked < self._replicas:
                # as for a webhook: a failover now would lose the job (and, for a create, the
                # conversation stored before it, which the one WAIT covers too)
                log.warning("job %s reached %d of %d replicas in time",
                            task.value, acked, self._replicas)
                raise QueueUnavailable(task.value, maybe_published=True)
            return
        if job is not None and self._outbox is not None:
            try:
                self._outbox.track(job, message)
            except redis.exceptions.RedisError as exc:
                raise self._unavailable(task, exc) from exc
        try:
            self._send(task, payload, message)
        except QueueUnavailable as exc:
            if job is not None and self._outbox is not None and not exc.maybe_published:
                try:
                    self._outbox.forget(job)
                except redis.exceptions.RedisError:
                    log.warning("outbox entry %s kept; it will be re-published", job)
            raise

    @staticmethod
    def _wait_ms(deadline: float) -> int:
        """A WAIT's timeout: what is left of the publish timeout, less the margin."""
        return wait_timeout_ms(deadline, WAIT_MARGIN_SECONDS)

    def _send(self, task: TaskName, payload: Any, message: BrokerMessage) -> None:
        """Celery's own publish (RabbitMQ: our confirmed one of `message`), under our deadline
        and with kombu's replays off."""
        deadline = time.monotonic() + self._timeout
        pauses = iter(RETRY_PAUSES_SECONDS)
        while True:
            try:
                if self._amqp is not None:
                    self._amqp.publish(message.queue, message.body)
                else:
                    self._app.send_task(
                        task.value,
                        **send_task_options(task, payload),
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

    @staticmethod
    def _unavailable(task: TaskName, exc: BaseException) -> QueueUnavailable:
        maybe_published = _timed_out(exc)
        log.warning("broker unavailable for %s: %s%s", task.value, type(exc).__name__,
                    " (timed out; the job may still arrive)" if maybe_published else "")
        return QueueUnavailable(task.value, maybe_published=maybe_published)

    def queue_depths(self) -> dict[str, int] | None:
        """RabbitMQ's count of waiting jobs per queue (None: the broker is no RabbitMQ, or did
        not answer within the timeout)."""
        if self._amqp is None:
            return None
        try:
            return self._amqp.depths()
        except _BROKER_ERRORS as exc:
            log.warning("queue depths not read from RabbitMQ: %s", type(exc).__name__)
            return None

    def ping(self) -> bool:
        """Whether the broker answers (for /readyz), within the publish timeout.

        The store's own Redis is one PING on its pooled client. A broker apart takes a new
        connection to check, so its answer is reused for BROKER_CHECK_SECONDS: however often
        /readyz is hit, a process opens at most one broker connection per interval.
        """
        if self._direct is not None:
            try:
                return bool(self._direct.ping())
            except redis.exceptions.RedisError:
                return False
        with self._ping_lock:
            now = time.monotonic()
            if self._pinged is not None and now - self._pinged[0] < BROKER_CHECK_SECONDS:
                return self._pinged[1]
            answered = self._amqp.ping() if self._amqp is not None else self._connect_once()
            self._pinged = (time.monotonic(), answered)
            return answered

    def _connect_once(self) -> bool:
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
