"""The message path: from an inbound webhook to the send we owe, and from a send to Vonage."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis

from shared.domain import InboundSms, MessageKind, OutboundSms
from shared.keys import Keys
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.settings import Settings
from shared.store import ConversationStore, now
from shared.vonage_gateway import VonageFailure, VonagePort

log = logging.getLogger(__name__)

# Parts of a multi-part message wait this long for their siblings before the group is dropped.
CONCAT_TTL_SECONDS = 3600

# Adds one part and, when the last one is in, hands back all parts exactly once: the group is
# deleted in the same step, so two workers holding the final two parts cannot both relay it.
_ADD_PART = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  local parts = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  return parts
end
return false
"""


class RetryLater(Exception):
    """A transient failure: the task should run again after a backoff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _opaque(*values: str) -> str:
    """An id derived from values that must not appear in logs (numbers)."""
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole inbound message: one webhook's text, or every part of a multi-part one."""

    message_id: str
    sender: str
    virtual_number: str
    text: str
    parts: int


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

    def reassemble(self, inbound: InboundSms) -> Reassembled | None:
        """The whole message once all its parts are in; None while parts are missing."""
        if inbound.concat is None:
            return Reassembled(
                inbound.message_id, inbound.sender, inbound.virtual_number, inbound.text, 1
            )
        group = _opaque(inbound.sender, inbound.virtual_number, inbound.concat.ref)
        found = self._add_part(
            keys=[self._keys.concat_parts(group)],
            args=[inbound.concat.part, inbound.text, inbound.concat.total, CONCAT_TTL_SECONDS],
        )
        if not found:
            return None
        parts = {int(found[i]): str(found[i + 1]) for i in range(0, len(found), 2)}
        text = "".join(parts[n] for n in sorted(parts))
        return Reassembled(f"c{group}", inbound.sender, inbound.virtual_number, text, len(parts))

    def plan(self, message: Reassembled) -> OutboundSms | None:
        """Decide the one send an inbound message leads to, and record that we owe it."""
        conversation_id = self._store.find_route(message.sender, message.virtual_number)
        conversation = self._store.get(conversation_id) if conversation_id else None
        other = conversation.counterpart_of(message.sender) if conversation else None
        if conversation is None or not conversation.status.is_live or other is None:
            self._counters.incr("smsproxy.inbound.unrouted")
            log.info("no live route from %s to %s", mask(message.sender),
                     mask(message.virtual_number))
            return self._out_of_session_reply(message)
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
        return outbound

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

    def send(self, outbound_id: str, vonage: VonagePort, *, final_attempt: bool) -> None:
        """Make the one Vonage call an outbound message is owed, at most once.

        Raises RetryLater on a transient failure unless this is the final attempt, in which
        case the message is recorded as failed.
        """
        message = self._messages.outbound(outbound_id)
        if message is None:
            return  # unknown, or already finished (its body is gone once sent)
        lease = self._settings.vonage_timeout_seconds * 3
        claim = self._messages.claim_send(outbound_id, lease)
        if not claim.acquired:
            log.info("send %s not claimed (state %s)", outbound_id, claim.state)
            return
        retain = self._settings.retain_bodies
        try:
            sent = vonage.send_sms(
                sender=message.sender,
                recipient=message.recipient,
                text=message.text,
                client_ref=outbound_id,
                callback=self._settings.receipt_url,
            )
        except VonageFailure as failure:
            if failure.transient and not final_attempt:
                self._messages.release_claim(outbound_id)
                self._counters.incr("smsproxy.outbound.retried")
                raise RetryLater(failure.reason) from failure
            self._messages.mark_failed(outbound_id, failure.code, failure.reason,
                                       retain_body=retain)
            self._counters.incr("smsproxy.outbound.failed")
            log.warning("send %s failed: %s %s", outbound_id, failure.code, failure.reason)
            return
        self._messages.mark_submitted(outbound_id, sent.message_ids, retain_body=retain)
        self._counters.incr("smsproxy.outbound.sent")
        log.info("sent %s to %s in %d part(s)", outbound_id, mask(message.recipient),
                 len(sent.message_ids))
