"""Multi-part inbound messages: parts kept in Redis until the whole message is in, or timed out.

A handset splits a long text into parts that arrive as separate webhooks, in any order. Each
part is added to its group's hash; the part that completes the group takes the whole message,
exactly once. A group that stays incomplete is flushed after SMSPROXY_CONCAT_TIMEOUT_SECONDS
with a visible marker for each missing part.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from shared.domain import InboundSms
from shared.keys import Keys
from shared.metrics import Counters
from shared.settings import Settings

# Adds one part. When the last one is in, hands back all parts exactly once: the group is deleted
# in the same step, so two workers holding the final two parts cannot both relay it. The first
# part of a group says so, so that its caller schedules the timeout that flushes a partial one.
_ADD_PART = """
local existed = redis.call('EXISTS', KEYS[1]) == 1
redis.call('HSET', KEYS[1], 'p' .. ARGV[1], ARGV[2], 'sender', ARGV[5], 'to', ARGV[6],
           'total', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
local parts = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) == 'p' then parts = parts + 1 end
end
if parts >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return {'complete', unpack(all)}
end
if existed then return {'waiting'} end
return {'first'}
"""

# Takes whatever parts arrived, once (the timeout's flush and the last part race for the group).
_TAKE_PARTS = """
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return all
"""

MISSING_PART_MARKER = "[…]"


def _opaque(*values: str) -> str:
    """An id derived from values that must not appear in logs (numbers)."""
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Pending:
    """A part stored while its siblings are awaited; `group` names the multi-part message."""

    group: str
    first: bool


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole inbound message: one webhook's text, or every part of a multi-part one."""

    message_id: str
    sender: str
    virtual_number: str
    text: str
    parts: int


def _assemble(group: str, flat: list[str]) -> Reassembled:
    """Join a group's parts in order; a missing part becomes a visible marker."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    parts = {int(k[1:]): v for k, v in fields.items() if k.startswith("p")}
    total = max(int(fields.get("total", "0")), max(parts, default=0))
    text = "".join(parts.get(n, MISSING_PART_MARKER) for n in range(1, total + 1))
    return Reassembled(f"c{group}", fields["sender"], fields["to"], text, len(parts))


class Reassembler:
    """Adds parts as they come and hands back each whole message once."""

    def __init__(
        self,
        client: redis.Redis,
        counters: Counters,
        settings: Settings,
        keys: Keys | None = None,
    ) -> None:
        self._keys = keys or Keys()
        self._counters = counters
        self._settings = settings
        self._add_part = client.register_script(_ADD_PART)
        self._take_parts = client.register_script(_TAKE_PARTS)

    def reassemble(self, inbound: InboundSms) -> Reassembled | Pending:
        """The whole message once all its parts are in; Pending while parts are missing."""
        if inbound.concat is None:
            return Reassembled(
                inbound.message_id, inbound.sender, inbound.virtual_number, inbound.text, 1
            )
        group = _opaque(inbound.sender, inbound.virtual_number, inbound.concat.ref)
        # kept past the flush time, so that the flush always finds what arrived
        ttl = self._settings.concat_timeout_seconds * 2 + 60
        found = self._add_part(
            keys=[self._keys.concat_parts(group)],
            args=[inbound.concat.part, inbound.text, inbound.concat.total, ttl,
                  inbound.sender, inbound.virtual_number],
        )
        if found[0] != "complete":
            return Pending(group, first=found[0] == "first")
        return _assemble(group, [str(x) for x in found[1:]])

    def flush_partial(self, group: str) -> Reassembled | None:
        """After the timeout: whatever parts arrived, with a marker for each missing one."""
        found = self._take_parts(keys=[self._keys.concat_parts(group)])
        if not found:
            return None  # completed in time (or already flushed)
        self._counters.incr("smsproxy.inbound.concat_incomplete")
        return _assemble(group, [str(x) for x in found])
