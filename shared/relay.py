"""The message path: from an inbound webhook to the send we owe, and from a send to Vonage."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import redis

from shared.domain import DeliveryState, InboundSms, MessageKind, OutboundSms
from shared.keys import Keys
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.ratelimit import RateLimiter
from shared.settings import Settings
from shared.store import ConversationStore, now
from shared.vonage_gateway import VonageFailure, VonagePort

log = logging.getLogger(__name__)

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


class RetryLater(Exception):
    """A transient failure: the task should run again after a backoff."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class InDoubt(Exception):
    """Another attempt holds the send, or held it and died mid-call: look again in `wait`
    seconds, when either a delivery receipt has settled it or the lease has run out."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"in doubt for {wait:.1f} s")
        self.wait = wait


class RecordLater(Exception):
    """Vonage took the send but Redis failed to record it: record these ids later, do not send
    again."""

    def __init__(self, message_ids: list[str]) -> None:
        super().__init__("send accepted, not yet recorded")
        self.message_ids = message_ids


class Throttled(Exception):
    """The shared send rate is used up: run again in `wait` seconds (no attempt was spent)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"throttled for {wait:.3f} s")
        self.wait = wait


def _opaque(*values: str) -> str:
    """An id derived from values that must not appear in logs (numbers)."""
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Pending:
    """A part stored while its siblings are awaited; `group` names the multi-part message."""

    group: str
    first: bool


@dataclass(frozen=True, slots=True)
class Planned:
    """What an inbound message leads to: the send we owe (if any), and whether it was unrouted."""

    outbound: OutboundSms | None
    unrouted: bool = False


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


class Relay:
    """Route lookup, reassembly and the bookkeeping of each inbound message's one send."""

    def __init__(
        self,
        client: redis.Redis,
        store: ConversationStore,
        messages: MessageLog,
        counters: Counters,
        settings: Settings,
        keys: Keys | None = None,
    ) -> None:
        self._keys = keys or Keys()
        self._store = store
        self._messages = messages
        self._counters = counters
        self._settings = settings
        self._add_part = client.register_script(_ADD_PART)
        self._take_parts = client.register_script(_TAKE_PARTS)
        self._limiter = RateLimiter(
            client,
            settings.vonage_api_key or "default",
            settings.send_rate_per_second,
            settings.send_burst,
            self._keys,
        )

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

    def plan(self, message: Reassembled) -> Planned:
        """Decide the one send an inbound message leads to, and record that we owe it."""
        conversation_id = self._store.find_route(message.sender, message.virtual_number)
        conversation = self._store.get(conversation_id) if conversation_id else None
        other = conversation.counterpart_of(message.sender) if conversation else None
        if conversation is None or not conversation.status.is_live or other is None:
            self._counters.incr("smsproxy.inbound.unrouted")
            log.info("no live route from %s to %s", mask(message.sender),
                     mask(message.virtual_number))
            return Planned(self._out_of_session_reply(message), unrouted=True)
        if self._settings.extend_on_activity:
            self._store.extend(conversation.id, now())
        retain = self._settings.retain_bodies
        self._messages.record_inbound(
            conversation.id, message.message_id, message.sender, message.parts,
            message.text if retain else None,
        )
        outbound = OutboundSms(
            id=f"relay-{message.message_id}",
            conversation_id=conversation.id,
            kind=MessageKind.RELAY,
            sender=other.proxy_number or "",
            recipient=other.number,
            text=self._settings.relay_prefix + message.text,
        )
        if self._messages.owe(outbound):
            self._counters.incr("smsproxy.inbound.relayed")
        return Planned(outbound)

    def _out_of_session_reply(self, message: Reassembled) -> OutboundSms | None:
        reply = self._settings.out_of_session_reply
        if not reply:
            return None
        outbound = OutboundSms(
            id=f"oos-{message.message_id}",
            conversation_id=None,
            kind=MessageKind.OUT_OF_SESSION,
            sender=message.virtual_number,
            recipient=message.sender,
            text=reply,
        )
        self._messages.owe(outbound)
        return outbound

    def send(self, outbound_id: str, vonage: VonagePort) -> None:
        """Make the one Vonage call an outbound message is owed, at most once.

        Raises Throttled when the shared rate limit says wait, and RetryLater on a transient
        failure while attempts remain; a message past its attempts or age is recorded failed.
        """
        message = self._messages.outbound(outbound_id)
        if message is None:
            return  # unknown, or already finished (its body is gone once sent)
        retain = self._settings.retain_bodies
        if time.time() - message.created_at > self._settings.send_max_age_seconds:
            # Late is worse than never for a chat message, and Vonage's own retries are over.
            self._messages.mark_failed(outbound_id, "expired", "not sent in time",
                                       retain_body=retain)
            self._counters.incr("smsproxy.outbound.expired")
            return
        wait = self._limiter.take()
        if wait > 0:
            self._counters.incr("smsproxy.outbound.throttled")
            raise Throttled(wait)
        claim = self._messages.claim_send(outbound_id, self.lease_seconds)
        if not claim.acquired:
            if claim.state in {DeliveryState.QUEUED.value, DeliveryState.SENDING.value}:
                # Held by a live attempt, or by one whose worker died mid-call: wait for the
                # lease rather than guess (a receipt may settle it meanwhile).
                raise InDoubt(self._messages.claim_remaining(outbound_id) + 1.0)
            log.info("send %s already %s", outbound_id, claim.state)
            return
        try:
            sent = vonage.send_sms(
                sender=message.sender,
                recipient=message.recipient,
                text=message.text,
                client_ref=outbound_id,
                callback=self._settings.receipt_url,
            )
        except VonageFailure as failure:
            if failure.transient and claim.attempts < self._settings.send_max_attempts:
                self._messages.release_claim(outbound_id)
                self._counters.incr("smsproxy.outbound.retried")
                raise RetryLater(failure.reason, claim.attempts) from failure
            self._messages.mark_failed(outbound_id, failure.code, failure.reason,
                                       retain_body=retain)
            self._counters.incr("smsproxy.outbound.failed")
            log.warning("send %s failed: %s %s", outbound_id, failure.code, failure.reason)
            return
        try:
            self.record_sent(outbound_id, sent.message_ids)
        except redis.RedisError as exc:
            raise RecordLater(sent.message_ids) from exc
        log.info("sent %s to %s in %d part(s)", outbound_id, mask(message.recipient),
                 len(sent.message_ids))

    @property
    def lease_seconds(self) -> int:
        """How long one attempt owns a send: past the Vonage call's timeout, and longer than
        the visibility timeout, so that a redelivered task finds the lease of a dead attempt
        still held and waits (InDoubt) for a receipt to settle it instead of sending again."""
        return max(3 * self._settings.vonage_timeout_seconds,
                   2 * self._settings.visibility_timeout_seconds)

    def record_sent(self, outbound_id: str, message_ids: list[str]) -> None:
        """Vonage accepted the send: record it (again, harmlessly, if it already was)."""
        self._messages.mark_submitted(
            outbound_id, message_ids, retain_body=self._settings.retain_bodies
        )
        self._counters.incr("smsproxy.outbound.sent")
