"""Delivery receipts recorded where they arrive: in web, with no task in between.

A receipt's whole work is one Lua script (`MessageLog.apply_receipt`): as cheap as the enqueue
web made for it before, atomic, and idempotent (the same part's same status applied twice leaves
the record as once). Once Redis has answered the script the receipt is as durable as a queued job
would have been (the same Redis, the same persistence), so web may acknowledge it then; a store
error before that answer is a 503 and Vonage retries. This saves the worker a task per send (its
fetch, unacked bookkeeping, acknowledgement and outbox settle: the worker's event loop is serial).

Dedupe keeps the queued path's semantics: one marker per receipt and status (`seen:receipt:...`),
checked before the script so that a retried older status is not applied again after a newer one,
written after it (a marker written first and a script that then failed would turn Vonage's retry
into a "duplicate" of a receipt never recorded). A marker left `claimed` by the two-step path of
a previous release (a receipt being queued at the upgrade) answers `in_progress`, as it did.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import redis
from redis.exceptions import RedisError

from shared.domain import DeliveryReceipt
from shared.keys import Keys
from shared.messages import CLAIM_MARKER, MessageLog
from shared.metrics import WEBHOOKS, Counters, legacy_series, series_key

log = logging.getLogger(__name__)

KIND = "receipt"
RECORDED = "recorded"
_UNMATCHED = legacy_series("smsproxy.receipts.unmatched")


class ReceiptOutcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


def dedupe_id(receipt: DeliveryReceipt) -> str:
    """One receipt per part and per status change: the status is part of what makes it unique."""
    return f"{receipt.message_id}:{receipt.status}"


class ReceiptDesk:
    """Applies a receipt webhook to its send's record, once per part and status."""

    def __init__(self, client: redis.Redis, messages: MessageLog, counters: Counters,
                 keys: Keys | None = None) -> None:
        self._redis = client
        self._messages = messages
        self._counters = counters
        self._keys = keys or Keys()
        self._accepted = series_key(WEBHOOKS, {"kind": KIND, "outcome": "accepted"})
        self._duplicate = {"kind": KIND, "outcome": "duplicate"}

    def record(self, receipt: DeliveryReceipt, *, dedupe_ttl: int,
               retain_body: bool) -> ReceiptOutcome:
        """Apply `receipt` unless it was before; raises RedisError while it is not recorded.

        Three round trips: the marker's check, the script, then the marker and the counters in
        one pipeline. After the script nothing raises: the receipt is in the store, and a 503
        would only have Vonage post it again (harmless, but a wasted retry).
        """
        marker = self._keys.dedupe(KIND, dedupe_id(receipt))
        seen = self._redis.get(marker)
        if seen == CLAIM_MARKER:
            return ReceiptOutcome.IN_PROGRESS
        if seen is not None:
            self._counters.count(WEBHOOKS, self._duplicate)
            return ReceiptOutcome.DUPLICATE
        matched = self._messages.apply_receipt(
            receipt.client_ref, receipt.message_id, receipt.status, receipt.err_code,
            retain_body=retain_body,
        )
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(marker, RECORDED, ex=dedupe_ttl)
            pipe.hincrby(self._keys.metrics(), self._accepted, 1)
            if matched is None:
                self._counters.count(*_UNMATCHED, pipe=pipe)
            pipe.execute()
        except RedisError as exc:
            # Recorded; a retry of it would find no marker and apply it again, to the same end.
            log.warning("receipt recorded, bookkeeping failed: %s", type(exc).__name__)
        return ReceiptOutcome.RECORDED
