"""The outbox that covers the broker's one blind spot, and its sweeper.

kombu's Redis transport pops a message with BRPOP and only then, in the worker, records it as
unacknowledged; a worker that dies in between loses the message for good (celery#7950), and no
visibility timeout brings it back. So the webhook's enqueue also keeps the job in an outbox
(`pending:jobs`, due for re-publishing at `pending:due`) until a worker settles it, and every
send owed is indexed (`out:open`) until it is finished. A beat job re-publishes unsettled
webhook jobs and re-queues unfinished sends once they are older than anything legitimate could
keep them waiting. Both are idempotent on the worker side (records and sends are keyed by id,
sends claimed once), so a re-publish of a job that was merely slow costs a no-op.

An outbox entry is the job's queue (the Redis list its message goes on), a newline and the
message as shared/broker_messages.py builds it, so the sweeper pushes it back without reading
Celery's envelope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from shared.broker_messages import legacy_queue_of
from shared.keys import Keys
from shared.settings import Settings

log = logging.getLogger(__name__)

# How many stranded items one sweep handles at most; the next sweep takes the rest.
SWEEP_BATCH = 500

# Splits an outbox entry into its queue and its message.
_SEPARATOR = "\n"

# Takes the due jobs and pushes them back on their queues, pushing their due time forward, in
# one step (two sweepers cannot both re-publish the same job in the same round). Returns how
# many it moved and, for `_REPUBLISH_UNFRAMED`, the jobs stored as a bare message (job, message).
_REPUBLISH = """
local now = redis.call('TIME')
local t = tonumber(now[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
local unframed = {}
for _, job in ipairs(due) do
  local entry = redis.call('HGET', KEYS[1], job)
  if entry then
    local cut = string.find(entry, ARGV[3], 1, true)
    if cut then
      redis.call('LPUSH', string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1))
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
return {moved, unframed}
"""

# A job stored by an earlier release, as its bare message: pushed to the queue found from the
# message, stored again as an entry, due again later; unless it changed (was settled) meanwhile.
# KEYS: pending jobs hash, pending due zset, the queue. ARGV: job, message, entry, seconds.
_REPUBLISH_UNFRAMED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(now[1]) + tonumber(ARGV[4]), ARGV[1])
return 1
"""


def outbox_entry(queue: str, message: str) -> str:
    """What the outbox keeps for a job: where its message goes, and the message."""
    if _SEPARATOR in queue:
        raise ValueError(f"a queue name cannot contain {_SEPARATOR!r}")
    return f"{queue}{_SEPARATOR}{message}"


def job_name(kind: str, message_id: str) -> str:
    """The outbox name of a webhook's job (its dedupe identity)."""
    return f"{kind}:{message_id}"


def republish_after(settings: Settings) -> int:
    """Seconds an unsettled job waits before it is published again: longer than a job can
    legitimately wait in a queue with a live worker (its visibility timeout plus kombu's
    restore sweep) plus the longest retry delay."""
    return int(settings.visibility_timeout_seconds * 2 + settings.max_backoff_seconds)


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    sends_requeued: list[str]


class Sweeper:
    """Settles handled jobs and brings back what the broker lost."""

    def __init__(self, client: redis.Redis, settings: Settings, keys: Keys | None = None) -> None:
        self._redis = client
        self._settings = settings
        self._keys = keys or Keys()
        self._republish = client.register_script(_REPUBLISH)
        self._republish_unframed = client.register_script(_REPUBLISH_UNFRAMED)

    def settle(self, kind: str, message_id: str) -> None:
        """A worker has handled this webhook's job: it leaves the outbox."""
        name = job_name(kind, message_id)
        pipe = self._redis.pipeline()
        pipe.hdel(self._keys.pending_jobs(), name)
        pipe.zrem(self._keys.pending_due(), name)
        pipe.execute()

    def sweep(self, now: float) -> SweepReport:
        keys = [self._keys.pending_jobs(), self._keys.pending_due()]
        moved, unframed = self._republish(
            keys=keys, args=[republish_after(self._settings), SWEEP_BATCH, _SEPARATOR],
        )
        republished = int(moved) + self._republish_old_entries(keys, unframed)
        stale = now - republish_after(self._settings)
        open_sends = [str(i) for i in self._redis.zrangebyscore(
            self._keys.outbound_open(), "-inf", stale, start=0, num=SWEEP_BATCH)]
        if open_sends:
            # pushed forward so that the next sweep does not queue them again at once
            self._redis.zadd(self._keys.outbound_open(), dict.fromkeys(open_sends, now))
        if republished or open_sends:
            log.warning("sweeper: re-published %d webhook job(s), re-queued %d send(s)",
                        republished, len(open_sends))
        return SweepReport(republished, open_sends)

    def _republish_old_entries(self, keys: list[str], unframed: list[str]) -> int:
        """Re-publish jobs stored before entries named their queue (then kept as entries)."""
        moved = 0
        for job, message in zip(unframed[::2], unframed[1::2], strict=True):
            try:
                queue = legacy_queue_of(message)
            except (ValueError, KeyError, TypeError):
                log.error("sweeper: outbox job %s names no queue; left where it is", job)
                continue
            moved += int(self._republish_unframed(
                keys=[*keys, queue],
                args=[job, message, outbox_entry(queue, message), republish_after(self._settings)],
            ))
        return moved
