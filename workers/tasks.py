"""Thin tasks: parse the payload, call shared/, enqueue what follows, retry what is transient."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task

from shared.domain import ConversationStatus, DeliveryReceipt, InboundSms, WebhookFieldError
from shared.jobs import QUEUE_OF, TaskName
from shared.relay import RetryLater
from shared.vonage_gateway import VonageFailure
from workers.celery_app import MAX_BACKOFF_SECONDS, app, settings
from workers.runtime import Runtime

log = logging.getLogger(__name__)
runtime = Runtime(settings)

SEND_MAX_RETRIES = 8
CREATE_MAX_RETRIES = 6


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter, capped well below the visibility timeout."""
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)


def _enqueue_sends(outbound_ids: list[str]) -> None:
    for outbound_id in outbound_ids:
        send_sms.apply_async((outbound_id,), queue=QUEUE_OF[TaskName.SEND_SMS].value)


@app.task(name=TaskName.CREATE_CONVERSATION.value, bind=True, max_retries=CREATE_MAX_RETRIES)
def create_conversation(self: Task[Any, Any], conversation_id: str) -> None:
    try:
        intro_ids = runtime.conversations.establish(conversation_id, runtime.vonage())
    except VonageFailure as failure:
        if self.request.retries >= CREATE_MAX_RETRIES:
            runtime.store.finish(
                conversation_id, ConversationStatus.FAILED, "number_insight_unavailable"
            )
            return
        log.info("create %s: transient %s, retrying", conversation_id, failure.code)
        raise self.retry(countdown=backoff(self.request.retries)) from failure
    _enqueue_sends(intro_ids)


@app.task(name=TaskName.RELAY_INBOUND.value)
def relay_inbound(payload: dict[str, str]) -> None:
    try:
        inbound = InboundSms.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed inbound payload: %s", exc)
        return
    whole = runtime.relay.reassemble(inbound)
    if whole is None:
        return  # waiting for the other parts
    outbound = runtime.relay.plan(whole)
    if outbound is not None:
        _enqueue_sends([outbound.id])


@app.task(name=TaskName.SEND_SMS.value, bind=True, max_retries=SEND_MAX_RETRIES)
def send_sms(self: Task[Any, Any], outbound_id: str) -> None:
    try:
        runtime.relay.send(
            outbound_id,
            runtime.vonage(),
            final_attempt=self.request.retries >= SEND_MAX_RETRIES,
        )
    except RetryLater as exc:
        raise self.retry(countdown=backoff(self.request.retries)) from exc


@app.task(name=TaskName.RECORD_RECEIPT.value)
def record_receipt(payload: dict[str, str]) -> None:
    try:
        receipt = DeliveryReceipt.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed receipt payload: %s", exc)
        return
    if runtime.messages.apply_receipt(receipt.message_id, receipt.status, receipt.err_code) is None:
        runtime.counters.incr("smsproxy.receipts.unmatched")


@app.task(name=TaskName.MAINTAIN_POOL.value)
def maintain_pool() -> None:
    try:
        runtime.pool_keeper.maintain(
            runtime.vonage(), settings.pool_targets, settings.inbound_url
        )
    except VonageFailure as failure:
        # The next scheduled run starts clean; nothing half-done is kept.
        runtime.counters.incr("smsproxy.pool.maintenance_failed")
        log.warning("pool maintenance stopped: %s %s", failure.code, failure.reason)


@app.task(name=TaskName.EXPIRE_CONVERSATIONS.value)
def expire_conversations() -> None:
    ended = runtime.conversations.expire_due()
    if ended:
        log.info("expired %d conversation(s)", ended)
