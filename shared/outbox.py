"""The outbox that covers the broker's one blind spot, and its sweeper.

kombu's Redis transport pops a message with BRPOP and only then, in the worker, records it as
unacknowledged; a worker that dies in between loses the message for good (celery#7950), and no
visibility timeout brings it back. A broker apart from the store can lose a job too, between
web's publish and its bookkeeping. So every job published (webhook jobs, creates, multi-part
flushes, status callbacks, out-of-session events) is also kept in an outbox (`pending:jobs`,
due for re-publishing at `pending:due`) until the task that runs it settles it, and every send
owed is indexed (`out:open`) until it is finished. A beat job re-publishes unsettled jobs and
re-queues unfinished sends once they are older than anything legitimate could keep them
waiting. Both are idempotent on the worker side (records and sends are keyed by id, sends
claimed once), so a re-publish of a job that was merely slow costs a no-op.

An outbox entry is the job's queue (the Redis list its message goes on), a newline and the
message as shared/broker_messages.py builds it, so the sweeper pushes it back without reading
Celery's envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import redis

from shared.broker_messages import BrokerMessage, legacy_queue_of
from shared.keys import Keys
from shared.scripts import queue_script
from shared.settings import Settings

log = logging.getLogger(__name__)

# How many stranded items one sweep handles at most; the next sweep takes the rest.
SWEEP_BATCH = 500

# Splits an outbox entry into its queue and its message.
_SEPARATOR = "\n"

# Takes the due jobs and pushes them back on their queues (ARGV[4] 'push'; else hands them
# back, queue and message, for a broker apart from this Redis), pushing their due time forward,
# in one step (two sweepers cannot both re-publish the same job in the same round). Returns how
# many it took, the jobs stored as a bare message (job, message) for `_REPUBLISH_UNFRAMED`, and
# what it handed back.
_REPUBLISH = """
local now = redis.call('TIME')
local t = tonumber(now[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
local unframed, taken = {}, {}
for _, job in ipairs(due) do
  local entry = redis.call('HGET', KEYS[1], job)
  if entry then
    local cut = string.find(entry, ARGV[3], 1, true)
    if cut then
      if ARGV[4] == 'push' then
        redis.call('LPUSH', string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1))
      else
        table.insert(taken, string.sub(entry, 1, cut - 1))
        table.insert(taken, string.sub(entry, cut + 1))
      end
      redis.call('ZADD', KEYS[2], t + tonumber(ARGV[1]), job)
      moved = moved + 1
    else
      table.insert(unframed, job)
      table.insert(unframed, entry)
    end
  else
    redis.call('ZREM', KEYS[2], job)
  end
end
return {moved, unframed, taken}
"""

# A job stored by an earlier release, as its bare message: pushed to the queue found from the
# message (KEYS[3], when the broker is this Redis; else the caller publishes it), stored again
# as an entry, due again later; unless it changed (was settled) meanwhile.
# KEYS: pending jobs hash, pending due zset, [the queue]. ARGV: job, message, entry, seconds.
_REPUBLISH_UNFRAMED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if KEYS[3] then redis.call('LPUSH', KEYS[3], ARGV[2]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(now[1]) + tonumber(ARGV[4]), ARGV[1])
return 1
"""


# KEYS: pending jobs hash, pending due zset, then the queue list to push to (if any).
# ARGV: job name, outbox entry, seconds until a re-publish is due, then the message to push.
# One step: a job is never on its queue without its outbox entry (nor the reverse).
# The outbox entry of a job, for every script that writes one (web's webhook enqueue too): due
# `due_in` seconds from now on the server's clock, the clock the sweeper reads.
TRACK_LUA = """
local function track(jobs, due, job, entry, due_in)
  local now = redis.call('TIME')
  redis.call('HSET', jobs, job, entry)
  redis.call('ZADD', due, tonumber(now[1]) + tonumber(due_in), job)
end
"""

_TRACK = TRACK_LUA + """
track(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if KEYS[3] then redis.call('LPUSH', KEYS[3], ARGV[4]) end
return 1
"""


# Pushes a tracked job's due time to now + ARGV[2] on the server's clock (only if it is tracked).
_POSTPONE = """
local now = redis.call('TIME')
return redis.call('ZADD', KEYS[1], 'XX', tonumber(now[1]) + tonumber(ARGV[2]), ARGV[1])
"""


def outbox_entry(queue: str, message: str) -> str:
    """What the outbox keeps for a job: where its message goes, and the message."""
    if _SEPARATOR in queue:
        raise ValueError(f"a queue name cannot contain {_SEPARATOR!r}")
    return f"{queue}{_SEPARATOR}{message}"


def job_name(kind: str, ident: str) -> str:
    """The outbox name of a job: its kind and what identifies it (a webhook's dedupe id, a
    conversation id, ...), the same for every publish of the same job."""
    return f"{kind}:{ident}"


def republish_after(settings: Settings) -> int:
    """Seconds an unsettled job waits before it is published again: longer than a job can
    legitimately wait in a queue with a live worker (its visibility timeout plus kombu's
    restore sweep) plus the longest retry delay."""
    return int(settings.visibility_timeout_seconds * 2 + settings.max_backoff_seconds)


class QueuePublisher(Protocol):
    """A broker that is no Redis list (RabbitMQ: shared/amqp_broker.py), for re-publishing."""

    def push(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Publish each (queue, message) pair, confirmed; raise if the broker did not take one."""


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    sends_requeued: list[str]


class Outbox:
    """Keeps published jobs until they are settled, and brings back what the broker lost."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        keys: Keys | None = None,
        *,
        broker: redis.Redis | None = None,
        publisher: QueuePublisher | None = None,
    ) -> None:
        """`broker` is the broker's Redis when it is not this one (the store's); `publisher`
        the broker when it is not a Redis at all (RabbitMQ)."""
        self._redis = client
        self._broker = broker
        self._publisher = publisher
        self._settings = settings
        self._keys = keys or Keys()
        self._republish = client.register_script(_REPUBLISH)
        self._republish_unframed = client.register_script(_REPUBLISH_UNFRAMED)
        self._track = client.register_script(_TRACK)
        self._postpone = client.register_script(_POSTPONE)

    @property
    def queues_client(self) -> redis.Redis | None:
        """The Redis that holds the broker's queue lists (None: the broker is no Redis)."""
        if self._publisher is not None:
            return None
        return self._broker if self._broker is not None else self._redis

    @property
    def _apart(self) -> bool:
        """Whether the broker is elsewhere than this Redis (jobs are published, not pushed)."""
        return self._broker is not None or self._publisher is not None

    def due_in(self, countdown: float | None = None) -> float:
        """When a job published now, to run after `countdown`, is due for re-publishing."""
        return (countdown or 0.0) + republish_after(self._settings)

    def publish(
        self, job: str, message: BrokerMessage, countdown: float | None = None, *,
        replicas: int = 0, wait_ms: int = 0,
    ) -> int:
        """Put a job on its queue with its outbox entry, in one step (the broker is this Redis).

        With `replicas`, then WAIT (at most `wait_ms`) on the same connection, and return how
        many replicas hold the job (and every write before it); 0 otherwise.
        """
        keys = [self._keys.pending_jobs(), self._keys.pending_due(), message.queue]
        args: list[str | float] = [job, outbox_entry(message.queue, message.body),
                                   self.due_in(countdown), message.body]
        if replicas <= 0:
            self._track(keys=keys, args=args)
            return 0
        pipe = self._redis.pipeline(transaction=False)
        queue_script(pipe, self._track, keys, args)
        pipe.execute_command("WAIT", replicas, max(1, wait_ms))  # type: ignore[no-untyped-call]
        return int(pipe.execute()[1])

    def track(self, job: str, message: BrokerMessage, countdown: float | None = None) -> None:
        """Keep a job that is about to be published to a broker apart from this Redis."""
        self._track(
            keys=[self._keys.pending_jobs(), self._keys.pending_due()],
            args=[job, outbox_entry(message.queue, message.body), self.due_in(countdown)],
        )

    def forget(self, job: str) -> None:
        """The job never reached the broker (its publish failed and the caller says so)."""
        pipe = self._redis.pipeline()
        pipe.hdel(self._keys.pending_jobs(), job)
        pipe.zrem(self._keys.pending_due(), job)
        pipe.execute()

    def postpone(self, kind: str, ident: str, countdown: float) -> None:
        """The job's task retries in `countdown` seconds: not due for re-publishing before then
        (a re-publish would start a second chain of retries beside the first)."""
        self._postpone(keys=[self._keys.pending_due()],
                       args=[job_name(kind, ident), self.due_in(countdown)])

    def holds(self, kind: str, ident: str) -> bool:
        """Whether the job is still owed: published (or about to be) and not yet settled."""
        return bool(self._redis.hexists(self._keys.pending_jobs(), job_name(kind, ident)))

    def settle(self, kind: str, ident: str) -> None:
        """The task that runs this job has done with it: it leaves the outbox."""
        name = job_name(kind, ident)
        pipe = self._redis.pipeline()
        pipe.hdel(self._keys.pending_jobs(), name)
        pipe.zrem(self._keys.pending_due(), name)
        pipe.execute()

    def sweep(self, now: float) -> SweepReport:
        keys = [self._keys.pending_jobs(), self._keys.pending_due()]
        moved, unframed, taken = self._republish(
            keys=keys, args=[republish_after(self._settings), SWEEP_BATCH, _SEPARATOR,
                             "return" if self._apart else "push"],
        )
        # Taken jobs are already due again later: one that fails to publish now (the broker
        # down) is simply published by a later sweep.
        self._push_apart(
            [(str(queue), str(message))
             for queue, message in zip(taken[::2], taken[1::2], strict=True)])
        republished = int(moved) + self._republish_old_entries(keys, unframed)
        stale = now - republish_after(self._settings)
        open_sends = [str(i) for i in self._redis.zrangebyscore(
            self._keys.outbound_open(), "-inf", stale, start=0, num=SWEEP_BATCH)]
        if open_sends:
            # pushed forward so that the next sweep does not queue them again at once
            self._redis.zadd(self._keys.outbound_open(), dict.fromkeys(open_sends, now))
        if republished or open_sends:
            log.warning("sweeper: re-published %d job(s), re-queued %d send(s)",
                        republished, len(open_sends))
        return SweepReport(republished, open_sends)

    def _push_apart(self, pairs: list[tuple[str, str]]) -> None:
        """Publish (queue, message) pairs to a broker apart from this Redis."""
        if not pairs:
            return
        if self._publisher is not None:
            self._publisher.push(pairs)
        elif self._broker is not None:
            pipe = self._broker.pipeline(transaction=False)
            for queue, message in pairs:
                pipe.lpush(queue, message)
            pipe.execute()

    def _republish_old_entries(self, keys: list[str], unframed: list[str]) -> int:
        """Re-publish jobs stored before entries named their queue (then kept as entries), to
        wherever the broker is now: its queue lists are not this Redis's when it is apart."""
        moved, apart = 0, []
        for job, message in zip(unframed[::2], unframed[1::2], strict=True):
            try:
                queue = legacy_queue_of(message)
            except (ValueError, KeyError, TypeError):
                log.error("sweeper: outbox job %s names no queue; left where it is", job)
                continue
            framed = int(self._republish_unframed(
                keys=keys if self._apart else [*keys, queue],
                args=[job, message, outbox_entry(queue, message), republish_after(self._settings)],
            ))
            moved += framed
            if framed and self._apart:
                apart.append((queue, message))
        # Stored as an entry first: if this publish fails, a later sweep publishes it framed.
        self._push_apart(apart)
        return moved
