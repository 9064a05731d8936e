"""Making the one Vonage call each owed send gets: rate limit, claim, call, record.

Every send is recorded first (shared/messages.py `owe`), under an id derived from what caused
it, so re-enqueuing it is harmless; the claim makes the call happen at most once per lease.
"""

from __future__ import annotations

import logging
import time

import redis

from shared.domain import DeliveryState, OutboundSms
from shared.keys import Keys
from shared.logging import bind_log_context
from shared.messages import UNREPLICATED, MessageLog
from shared.metrics import RELAY_LATENCY, SENDS, WAITS, Counters, HistogramBuffer
from shared.phone import mask
from shared.pool_inventory import PoolInventory
from shared.ratelimit import RateLimiter
from shared.relay_caps import DailySends
from shared.settings import Settings
from shared.vonage_gateway import VonageFailure, VonagePort, Vonages, port_of

log = logging.getLogger(__name__)

# A send whose claim no replica confirmed (SMSPROXY_MIN_REPLICAS_ACKED) looks again after
# this; the WAIT itself is bounded by the publish timeout, never less than MIN_WAIT_SECONDS.
UNREPLICATED_RETRY_SECONDS = 1.0
MIN_WAIT_SECONDS = 0.1


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


class Sender:
    """Sends owed messages through the Vonage port, at most once each."""

    def __init__(
        self,
        client: redis.Redis,
        messages: MessageLog,
        counters: Counters,
        settings: Settings,
        keys: Keys | None = None,
        daily: DailySends | None = None,
        inventory: PoolInventory | None = None,
        tally: HistogramBuffer | None = None,
    ) -> None:
        self._daily = daily
        self._tally = tally
        self._inventory = inventory
        self._redis = client
        self._keys = keys or Keys()
        self._messages = messages
        self._counters = counters
        self._settings = settings
        accounts = settings.vonage_accounts
        # "default" names the bucket of a deployment without a key (tests): as it always did
        self._primary = accounts.primary.api_key if accounts.primary else "default"
        self._several = len(accounts) > 1
        # Vonage's limit is per API key: one bucket per account, named by its key (the single
        # account's bucket keeps the name it had before there could be several).
        self._limiters = {
            key: RateLimiter(client, key, settings.send_rate_per_second, settings.send_burst,
                             self._keys, max_wait=settings.max_backoff_seconds)
            for key in accounts.keys or (self._primary,)
        }

    def account_of(self, sender: str) -> str:
        """The API key a send from `sender` goes through: the account that owns the number
        (a number the pool does not know, or an unknown account, falls to the primary)."""
        if not self._several or self._inventory is None:
            return self._primary  # one account: no lookup on the hot path
        found = self._inventory.account_of(sender)
        return found if found in self._limiters else self._primary

    def send(self, outbound_id: str, vonage: Vonages, owed: OutboundSms | None = None) -> None:
        """Make the one Vonage call an outbound message is owed, at most once.

        `vonage` is one port, or one per account: the send goes through the account that owns
        its sender number, under that account's rate bucket. Raises Throttled when the shared
        rate limit says wait, and RetryLater on a transient
        failure while attempts remain; a message past its attempts or age is recorded failed.
        `owed` is the send as the caller has just recorded it (`MessageLog.owe`), which saves
        reading it back; whether it may still be sent is the claim's to say, as always.
        """
        message = owed if owed is not None else self._messages.outbound(outbound_id)
        if message is not None:
            bind_log_context(conversation_id=message.conversation_id)
        if message is None:
            # unknown, or already finished (its body is gone once sent), by a receipt maybe
            self._redis.zrem(self._keys.outbound_in_doubt(), outbound_id)
            return
        if time.time() - message.created_at > self._settings.send_max_age_seconds:
            # Late is worse than never for a chat message, and Vonage's own retries are over.
            if self._messages.mark_failed(outbound_id, "expired", "not sent in time",
                                          retain_body=self._settings.retain_bodies):
                self._counters.incr("smsproxy.outbound.expired")
            self._redis.zrem(self._keys.outbound_in_doubt(), outbound_id)
            return
        account = self.account_of(message.sender)
        wait = self._limiters[account].take()
        if wait > 0:
            self._counters.incr("smsproxy.outbound.throttled")
            raise Throttled(wait)
        claim = self._messages.claim_send(
            outbound_id, self.lease_seconds, replicas=self._settings.min_replicas_acked,
            wait_ms=int(max(self._settings.publish_timeout_seconds, MIN_WAIT_SECONDS) * 1000),
        )
        if claim.state == UNREPLICATED:
            # No replica confirmed the claim: after a failover the send would look unclaimed
            # and go twice. Not sent; no attempt spent; look again shortly.
            self._counters.count(WAITS, {"reason": "unreplicated"})
            raise InDoubt(UNREPLICATED_RETRY_SECONDS)
        if not claim.acquired:
            if claim.state in {DeliveryState.QUEUED.value, DeliveryState.SENDING.value}:
                # Held by a live attempt, or by one whose worker died mid-call: wait for the
                # lease rather than guess (a receipt may settle it meanwhile).
                self._in_doubt(outbound_id)
                raise InDoubt(self._messages.claim_remaining(outbound_id) + 1.0)
            log.info("send %s already %s", outbound_id, claim.state)
            return
        self._call(message, claim.attempts, port_of(vonage, account))

    def _call(self, message: OutboundSms, attempts: int, vonage: VonagePort) -> None:
        """The Vonage call of a claimed send, and what its outcome means for the record."""
        try:
            sent = vonage.send_sms(
                sender=message.sender,
                recipient=message.recipient,
                text=message.text,
                client_ref=message.id,
                callback=self._settings.receipt_url,
            )
        except VonageFailure as failure:
            if failure.transient and attempts < self._settings.send_max_attempts:
                self._messages.release_claim(message.id)
                self._counters.incr("smsproxy.outbound.retried")
                raise RetryLater(failure.reason, attempts) from failure
            if self._messages.mark_failed(message.id, failure.code, failure.reason,
                                          retain_body=self._settings.retain_bodies):
                self._counters.incr("smsproxy.outbound.failed")
            self._redis.zrem(self._keys.outbound_in_doubt(), message.id)
            log.warning("send %s failed: %s %s", message.id, failure.code, failure.reason)
            return
        try:
            self.record_sent(message.id, sent.message_ids, message.origin_at)
        except redis.RedisError as exc:
            raise RecordLater(sent.message_ids) from exc
        log.info("sent %s to %s in %d part(s)", message.id, mask(message.recipient),
                 len(sent.message_ids))

    @property
    def lease_seconds(self) -> int:
        """How long one attempt owns a send: past the Vonage call's timeout, and longer than
        the visibility timeout, so that a redelivered task finds the lease of a dead attempt
        still held and waits (InDoubt) for a receipt to settle it instead of sending again."""
        return max(3 * self._settings.vonage_timeout_seconds,
                   2 * self._settings.visibility_timeout_seconds)

    def record_sent(
        self, outbound_id: str, message_ids: list[str], origin_at: float | None = None
    ) -> None:
        """Vonage accepted the send: record it (again, harmlessly, if it already was).

        `origin_at`, for a relay, is when web received the webhook: the time since is the
        latency the person felt, counted with the send."""
        self._messages.mark_submitted(
            outbound_id, message_ids, retain_body=self._settings.retain_bodies
        )
        self._count_sent(origin_at)
        made = self._daily.count() if self._daily is not None else None
        if made is not None and made == self._settings.daily_send_limit:
            # Once a day, at the crossing: what the alert fires on. From now on the inbound
            # rules stop non-essential sends (out-of-session replies, cap notices).
            self._counters.incr("smsproxy.sends.daily_limit_reached")
            log.error("daily send limit of %d reached: non-essential sends stop until 00:00 UTC",
                      made)

    def _count_sent(self, origin_at: float | None) -> None:
        """The sent counter and a relay's latency: into the process's buffer when given one
        (written about once a second, where they cost every send a round trip of its own),
        else in one pipeline."""
        latency = time.time() - origin_at if origin_at is not None else None
        tally = self._tally
        if tally is None:
            pipe = self._redis.pipeline(transaction=False)
            self._counters.count(SENDS, {"outcome": "sent"}, pipe=pipe)
            if latency is not None:
                self._counters.observe(RELAY_LATENCY, latency, pipe=pipe)
            pipe.execute()
            return
        tally.count(SENDS, {"outcome": "sent"})
        if latency is not None:
            tally.observe(RELAY_LATENCY, latency)
        tally.flush_if_due()

    def _in_doubt(self, outbound_id: str) -> None:
        """Counted once per wait, and kept in the in-doubt set (first seen) until settled."""
        pipe = self._redis.pipeline(transaction=False)
        self._counters.count(WAITS, {"reason": "in_doubt"}, pipe=pipe)
        pipe.zadd(self._keys.outbound_in_doubt(), {outbound_id: time.time()}, nx=True)
        pipe.execute()
