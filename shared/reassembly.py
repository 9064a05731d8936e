"""Multi-part inbound messages: parts kept in Redis until the whole message is in, or timed out.

A handset splits a long text into parts that arrive as separate webhooks, in any order. Each
part is added to its group's hash; the part that completes the group takes the whole message,
exactly once. A group that stays incomplete is flushed after SMSPROXY_CONCAT_TIMEOUT_SECONDS
with one visible marker for each run of missing parts: a part may claim up to 255 siblings that
never come, and a marker per missing part would let one webhook become a 13-part SMS.

A handset's `concat-ref` is a small counter that wraps (8 or 16 bits), so (sender, virtual
number, ref) names a group only while it is open: each opening gets its own instance id (the
messageId of the part that opened it), and the whole message is named by it. A finished group
leaves a tombstone for FINISHED_GROUP_SECONDS that remembers its parts' messageIds: a part
redelivered after the group finished is a duplicate, a part the flushed message lacked is a
late part (counted and recorded, never relayed on its own), and any other part opens a new
message. Until the whole message's relay is recorded (`release`), the tombstone also keeps the
texts: a task that fails (or dies) after taking the whole message gets it again when it runs
again, instead of finding it gone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import redis

from shared.domain import InboundSms
from shared.keys import Keys
from shared.metrics import Counters
from shared.settings import Settings

# How long a finished group remembers its parts: far past a redelivered task (the visibility
# timeout) or a re-published one (the outbox sweeper's delay). A wrapped concat-ref from the
# same sender to the same number within this time, with the same part count and a part number
# the flushed message lacked, would be taken for a late part: with an 8-bit ref that needs 256
# long messages in this time from one person to one number.
FINISHED_GROUP_SECONDS = 3600

# KEYS: the open group, its tombstone. ARGV: part, text, total, ttl, sender, to, message id,
# tombstone ttl. The completing part hands back all parts exactly once: the group is deleted and
# its tombstone written in the same step, so two workers holding the final two parts cannot both
# relay it. The part that opens a group says so, so that its caller schedules the flush.
_ADD_PART = """
local open, done, part, mid = KEYS[1], KEYS[2], ARGV[1], ARGV[7]
if redis.call('HEXISTS', done, 'm:' .. mid) == 1 then
  -- a part of a finished message, again: the whole message, while its relay is unrecorded
  if redis.call('HEXISTS', done, 'sender') == 1 then
    return {'complete', unpack(redis.call('HGETALL', done))}
  end
  return {'duplicate'}
end
local existed = redis.call('EXISTS', open) == 1
if existed then
  if redis.call('HEXISTS', open, 'm:' .. mid) == 1 then return {'duplicate'} end
elseif redis.call('HGET', done, 'flushed') == '1' and redis.call('HGET', done, 'total') == ARGV[3]
    and redis.call('HEXISTS', done, 'p' .. part) == 0 then
  redis.call('HSET', done, 'm:' .. mid, part)
  return {'late', redis.call('HGET', done, 'id')}
end
if not existed then redis.call('HSET', open, 'id', mid) end
redis.call('HSET', open, 'p' .. part, ARGV[2], 'm:' .. mid, part, 'sender', ARGV[5],
           'to', ARGV[6], 'total', ARGV[3])
redis.call('EXPIRE', open, ARGV[4])
local all = redis.call('HGETALL', open)
local parts = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) == 'p' then parts = parts + 1 end
end
if parts >= tonumber(ARGV[3]) then
  redis.call('DEL', open, done)
  redis.call('HSET', done, unpack(all))
  redis.call('HSET', done, 'flushed', '0')
  redis.call('EXPIRE', done, ARGV[8])
  return {'complete', unpack(all)}
end
if existed then return {'waiting', redis.call('HGET', open, 'id')} end
return {'first', mid}
"""

# Takes whatever parts arrived to one opening of a group, once (the timeout's flush and the last
# part race for it), and leaves the tombstone that recognises its late parts. A flush that runs
# again before its relay was recorded gets the same parts again.
# KEYS: the open group, its tombstone. ARGV: the instance id, tombstone ttl.
_TAKE_PARTS = """
local open, done = KEYS[1], KEYS[2]
if redis.call('HGET', open, 'id') ~= ARGV[1] then
  if redis.call('HGET', done, 'id') == ARGV[1] and redis.call('HGET', done, 'flushed') == '1'
      and redis.call('HEXISTS', done, 'sender') == 1 then
    return redis.call('HGETALL', done)
  end
  return {}
end
local all = redis.call('HGETALL', open)
redis.call('DEL', open, done)
redis.call('HSET', done, unpack(all))
redis.call('HSET', done, 'flushed', '1')
redis.call('EXPIRE', done, ARGV[2])
return all
"""

# The whole message's relay is recorded: the tombstone keeps only what recognises its parts.
# KEYS: the tombstone. ARGV: the instance id.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local k = all[i]
  if k == 'sender' or k == 'to' then
    redis.call('HDEL', KEYS[1], k)
  elseif string.sub(k, 1, 1) == 'p' then
    redis.call('HSET', KEYS[1], k, '1')
  end
end
return 1
"""

MISSING_PART_MARKER = "[…]"


def _opaque(*values: str) -> str:
    """An id derived from values that must not appear in logs (numbers)."""
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Pending:
    """A part stored while its siblings are awaited; `group` and `instance` name the opening
    of the multi-part message it belongs to; `first` when this part opened it."""

    group: str
    instance: str
    first: bool


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A part already taken (a redelivered task): nothing to do."""


@dataclass(frozen=True, slots=True)
class LatePart:
    """A part that arrived after its message was relayed without it."""

    message_id: str  # the part's own messageId
    whole_message_id: str  # the message it belonged to
    sender: str
    virtual_number: str
    part: int


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole inbound message: one webhook's text, or every part of a multi-part one (then
    `group` and `instance` name it, for `Reassembler.release`)."""

    message_id: str
    sender: str
    virtual_number: str
    text: str
    parts: int
    group: str | None = None
    instance: str | None = None
    binary: bool = False  # octets, not text (each part stands alone: it is never relayed)
    # when web received the webhook that made it whole; None for one flushed incomplete
    received_at: float | None = None


def whole_message_id(instance: str) -> str:
    """The id of a multi-part message: from the messageId of the part that opened it."""
    return f"c-{instance}"


def _assemble(group: str, flat: list[str]) -> Reassembled:
    """Join a group's parts in order; each run of missing parts becomes one visible marker
    (so the markers never outnumber the parts that came, plus one)."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    parts = {int(k[1:]): v for k, v in fields.items() if k[:1] == "p" and k[1:].isdigit()}
    total = max(int(fields.get("total", "0")), max(parts, default=0))
    pieces: list[str] = []
    for n in range(1, total + 1):
        if n in parts:
            pieces.append(parts[n])
        elif n - 1 in parts or n == 1:
            pieces.append(MISSING_PART_MARKER)
    text = "".join(pieces)
    return Reassembled(whole_message_id(fields["id"]), fields["sender"], fields["to"], text,
                       len(parts), group, fields["id"])


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
        self._release = client.register_script(_RELEASE)

    def reassemble(self, inbound: InboundSms) -> Reassembled | Pending | LatePart | Duplicate:
        """The whole message once all its parts are in; Pending while parts are missing."""
        if inbound.concat is None or inbound.is_binary:
            return Reassembled(
                inbound.message_id, inbound.sender, inbound.virtual_number, inbound.text, 1,
                binary=inbound.is_binary, received_at=inbound.received_at,
            )
        group = _opaque(inbound.sender, inbound.virtual_number, inbound.concat.ref)
        # kept past the flush time, so that the flush always finds what arrived
        ttl = self._settings.concat_timeout_seconds * 2 + 60
        found = self._add_part(
            keys=[self._keys.concat_parts(group), self._keys.concat_finished(group)],
            args=[inbound.concat.part, inbound.text, inbound.concat.total, ttl,
                  inbound.sender, inbound.virtual_number, inbound.message_id,
                  FINISHED_GROUP_SECONDS],
        )
        outcome = str(found[0])
        if outcome == "duplicate":
            return Duplicate()
        if outcome == "late":
            self._counters.incr("smsproxy.inbound.concat_late")
            return LatePart(inbound.message_id, whole_message_id(str(found[1])),
                            inbound.sender, inbound.virtual_number, inbound.concat.part)
        if outcome != "complete":
            return Pending(group, str(found[1]), first=outcome == "first")
        return replace(_assemble(group, [str(x) for x in found[1:]]),
                       received_at=inbound.received_at)

    def flush_partial(self, group: str, instance: str) -> Reassembled | None:
        """After the timeout: whatever parts arrived, with a marker for each missing one."""
        found = self._take_parts(
            keys=[self._keys.concat_parts(group), self._keys.concat_finished(group)],
            args=[instance, FINISHED_GROUP_SECONDS],
        )
        if not found:
            return None  # completed in time (or already flushed and relayed)
        self._counters.incr("smsproxy.inbound.concat_incomplete")
        return _assemble(group, [str(x) for x in found])

    def release(self, whole: Reassembled) -> None:
        """The whole message's relay is recorded: its texts need not be kept any longer."""
        if whole.group is not None and whole.instance is not None:
            self._release(keys=[self._keys.concat_finished(whole.group)], args=[whole.instance])
