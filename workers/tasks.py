"""Thin tasks: parse the payload, call shared/, enqueue what follows, retry what is transient."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task

from shared.callbacks import CallbackFailed, deliver_event
from shared.domain import (
    Conversation,
    ConversationStatus,
    DeliveryReceipt,
    InboundSms,
    WebhookFieldError,
)
from shared.jobs import QUEUE_OF, TaskName
from shared.relay import RetryLater
from shared.vonage_gateway import VonageFailure
from workers.celery_app import MAX_BACKOFF_SECONDS, app, settings
from workers.runtime import Runtime

log = logging.getLogger(__name__)
runtime = Runtime(settings)

SEND_MAX_RETRIES = 8
CREATE_MAX_RETRIES = 6
CALLBACK_MAX_RETRIES = 8


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter, capped well below the visibility timeout."""
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)


def _enqueue_sends(outbound_ids: list[str]) -> None:
    for outbound_id in outbound_ids:
        send_sms.apply_async((outbound_id,), queue=QUEUE_OF[TaskName.SEND_SMS].value)


def _notify(conversation: Conversation | None) -> None:
    """Queue a status callback when the marketplace asked for them."""
    if conversation is not None and conversation.callback_url:
        notify_callback.apply_async(
            ({"conversation_id": conversation.id, "event": conversation.status.value},),
            queue=QUEUE_OF[TaskName.NOTIFY_CALLBACK].value,
        )


@app.task(name=TaskName.CREATE_CONVERSATION.value, bind=True, max_retries=CREATE_MAX_RETRIES)
def create_conversation(self: Task[Any, Any], conversation_id: str) -> None:
    try:
        outcome = runtime.conversations.establish(conversation_id, runtime.vonage())
    except VonageFailure as failure:
        if self.request.retries >= CREATE_MAX_RETRIES:
            _notify(runtime.store.finish(
                conversation_id, ConversationStatus.FAILED, "number_insight_unavailable"
            ))
            return
        log.info("create %s: transient %s, retrying", conversation_id, failure.code)
        raise self.retry(countdown=backoff(self.request.retries)) from failure
    _enqueue_sends(list(outcome.intro_ids))
    if outcome.changed:
        _notify(outcome.conversation)


@app.task(name=TaskName.NOTIFY_CALLBACK.value, bind=True, max_retries=CALLBACK_MAX_RETRIES)
def notify_callback(self: Task[Any, Any], payload: dict[str, str]) -> None:
    conversation = runtime.store.get(str(payload.get("conversation_id", "")))
    secret = settings.callback_secret
    if conversation is None or not conversation.callback_url or not secret:
        return
    try:
        deliver_event(
            runtime.http(), conversation.callback_url, conversation, str(payload["event"]), secret
        )
    except CallbackFailed as failure:
        if self.request.retries >= CALLBACK_MAX_RETRIES:
            runtime.counters.incr("smsproxy.callbacks.dropped")
            log.warning("callback for %s dropped: %s", conversation.id, failure)
            return
        runtime.counters.incr("smsproxy.callbacks.retried")
        raise self.retry(countdown=backoff(self.request.retries)) from failure
    runtime.counters.incr("smsproxy.callbacks.delivered")


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
    for conversation in ended:
        _notify(conversation)
    if ended:
        log.info("expired %d conversation(s)", len(ended))
