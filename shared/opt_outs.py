"""Who has opted out of which virtual number: STOP and START, per person and number.

A person who texts STOP to a virtual number hears nothing more from it, in every conversation
in which that number is theirs, until they text START (Twilio Proxy's rule, docs/privacy.md).
One hash per (person, number); an opt-out has no TTL. Allocation (shared/routes.py) reads the
same key to give an opted-out person another number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from shared.clock import now
from shared.domain import Conversation
from shared.keys import Keys
from shared.read_batch import Read, ReadBatch

# An opt-in's record stays this long, so that a redelivered START still finds it was the one
# that opted the person in (and re-sends nothing new); then the person is as if never opted out.
OPT_IN_RECORD_SECONDS = 7 * 24 * 3600


class ParticipantState(StrEnum):
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"


class Change(StrEnum):
    """What applying a state change did."""

    MADE = "made"  # this call changed it
    MADE_BEFORE = "made_before"  # the same message changed it on an earlier run (a retry)
    NONE = "none"  # it already was so, by another message


@dataclass(frozen=True, slots=True)
class OptOut:
    """A person's standing opt-out of a virtual number, and the message that made it."""

    message_id: str
    at: float


# KEYS[1]: the (person, number) hash. ARGV: wanted state, message id, now, opt-in record TTL.
# One step, so that two runs of the same message (or a STOP and a START racing) cannot both
# report a change, and a retry of the message that made the change reports it again.
_CHANGE = """
local state, by = redis.call('HGET', KEYS[1], 'state'), redis.call('HGET', KEYS[1], 'by')
local current = state or 'opted_in'
if current == ARGV[1] then
  if by == ARGV[2] then return 'made_before' end
  return 'none'
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'by', ARGV[2], 'at', ARGV[3])
if ARGV[1] == 'opted_out' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return 'made'
"""


class OptOuts:
    """The opt-out store; takes its Redis client in, never builds one."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._change = client.register_script(_CHANGE)

    def get(self, person: str, virtual_number: str) -> OptOut | None:
        """The person's opt-out of the number, or None when they may receive from it."""
        return self.get_many([(person, virtual_number)])[0]

    def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[OptOut | None]:
        """`get` for each (person, virtual number), in one round trip."""
        batch = ReadBatch(self._redis)
        read = self.queue_get_many(batch, pairs)
        batch.run()
        return read.value

    def queue_get_many(
        self, batch: ReadBatch, pairs: Sequence[tuple[str, str]]
    ) -> Read[list[OptOut | None]]:
        """`get_many` as part of a batch of reads (its answer once the batch has run)."""
        for person, number in pairs:
            batch.pipeline.hgetall(self._keys.opt_out(person, number))
        return batch.add(len(pairs), lambda replies: [_opt_out(data) for data in replies])

    def opted_out(self, pairs: Sequence[tuple[str, str | None]]) -> tuple[bool, ...]:
        """For each (person, virtual number), whether they opted out of it (no number: no)."""
        pipe = self._redis.pipeline()
        for person, number in pairs:
            if number:
                pipe.hget(self._keys.opt_out(person, number), "state")
        answers = iter(pipe.execute())
        return tuple(
            bool(number) and next(answers) == ParticipantState.OPTED_OUT.value
            for _, number in pairs
        )

    def of(self, conversation: Conversation) -> tuple[bool, ...]:
        """For each participant, whether they opted out of their proxy number."""
        return self.opted_out([(p.number, p.proxy_number) for p in conversation.participants])

    def change(
        self, person: str, virtual_number: str, state: ParticipantState, message_id: str
    ) -> Change:
        """Set the person's state on the number because of `message_id`, once."""
        result = self._change(
            keys=[self._keys.opt_out(person, virtual_number)],
            args=[state.value, message_id, now(), OPT_IN_RECORD_SECONDS],
        )
        return Change(str(result))


def _opt_out(data: dict[str, str]) -> OptOut | None:
    if data.get("state") != ParticipantState.OPTED_OUT.value:
        return None
    return OptOut(str(data.get("by", "")), float(data.get("at", 0.0)))
