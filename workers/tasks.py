"""Thin tasks: parse the payload, call shared/, enqueue what follows, retry what is transient."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from celery import Task
from redis.exceptions import RedisError

from shared.callbacks import (
    CallbackFailed,
    conversation_event,
    deliver_event,
    out_of_session_event,
)
from shared.domain import (
    Conversation,
    ConversationStatus,
    DeliveryReceipt,
    InboundSms,
    WebhookFieldError,
)
from shared.jobs import QUEUE_OF, TaskName
from shared.relay import (
    MISSING_PART_MARKER,
    InDoubt,
    Pending,
    Reassembled,
    RecordLater,
    RetryLater,
    Throttled,
)
from shared.vonage_gateway import VonageFailure
from workers.celery_app import app, settings
from workers.runtime import Runtime

log = logging.getLogger(__name__)
runtime = Runtime(settings)

CREATE_MAX_RETRIES = 6
CALLBACK_MAX_RETRIES = 8
# A Redis that restarts or fails over takes seconds: every task retries through it, with
# backoff below a third of the visibility timeout. Tasks are idempotent, so a retry is safe.
REDIS_MAX_RETRIES = 10
REDIS_RETRY: dict[str, Any] = {
    "autoretry_for": (RedisError,),
    "retry_backoff": 1,
    "retry_backoff_max": int(settings.max_backoff_seconds),
    "retry_jitter": True,
}


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter, capped well below the visibility timeout."""
    ceiling = min(settings.max_backoff_seconds, 2.0 ** retries)
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


@app.task(name=TaskName.CREATE_CONVERSATION.value, bind=True, max_retries=CREATE_MAX_RETRIES,
          **REDIS_RETRY)
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


def _post_event(task: Task[Any, Any], url: str, event: dict[str, Any]) -> None:
    """Deliver a signed event to the marketplace, retried with backoff, then dropped."""
    secret = settings.callback_secret
    if not secret:
        return
    try:
        deliver_event(runtime.http(), url, event, secret)
    except CallbackFailed as failure:
        if task.request.retries >= CALLBACK_MAX_RETRIES:
            runtime.counters.incr("smsproxy.callbacks.dropped")
            log.warning("event %s dropped: %s", event["id"], failure)
            return
        runtime.counters.incr("smsproxy.callbacks.retried")
        raise task.retry(countdown=backoff(task.request.retries)) from failure
    runtime.counters.incr("smsproxy.callbacks.delivered")


@app.task(name=TaskName.NOTIFY_CALLBACK.value, bind=True, max_retries=CALLBACK_MAX_RETRIES)
def notify_callback(self: Task[Any, Any], payload: dict[str, str]) -> None:
    conversation = runtime.store.get(str(payload.get("conversation_id", "")))
    if conversation is not None and conversation.callback_url:
        event = conversation_event(conversation, str(payload.get("event", "")))
        _post_event(self, conversation.callback_url, event)


@app.task(name=TaskName.NOTIFY_OUT_OF_SESSION.value, bind=True, max_retries=CALLBACK_MAX_RETRIES)
def notify_out_of_session(self: Task[Any, Any], payload: dict[str, str]) -> None:
    if settings.out_of_session_callback_url:
        event = out_of_session_event(payload["from"], payload["to"], payload["message_id"])
        _post_event(self, settings.out_of_session_callback_url, event)


def _send_now_or_later(outbound_id: str) -> None:
    """Send a relay from the relay task itself: one task per message instead of two.

    The worker's event loop receives and acknowledges every task one by one, and at volume that
    loop, not the threads, is what limits a worker (measured: docs/performance.md). A send that
    has to wait (the rate limit, a transient failure) goes to the outbound queue as usual.
    """
    if not settings.inline_sends:
        _enqueue_sends([outbound_id])
        return
    try:
        runtime.relay.send(outbound_id, runtime.vonage())
    except SEND_LATER as exc:
        countdown, kwargs = _send_again(exc)
        send_sms.apply_async((outbound_id,), kwargs, countdown=countdown,
                             queue=QUEUE_OF[TaskName.SEND_SMS].value)


SEND_LATER = (Throttled, RetryLater, InDoubt, RecordLater)


def _send_again(exc: Exception) -> tuple[float, dict[str, Any]]:
    """When to try a send again and with what: one policy for the inline and the queued path."""
    if isinstance(exc, Throttled):
        # spread the waiters over the next second rather than waking them all at once
        return exc.wait + random.uniform(0, 1.0), {}  # noqa: S311
    if isinstance(exc, RetryLater):
        return backoff(exc.attempts), {}
    if isinstance(exc, InDoubt):
        return exc.wait, {}
    if isinstance(exc, RecordLater):
        # Vonage took it; only the record is missing: the retry records, never re-sends.
        return backoff(0), {"accepted_ids": exc.message_ids}
    raise TypeError(f"not a send to try again: {exc!r}")


def _relay(whole: Reassembled) -> None:
    planned = runtime.relay.plan(whole)
    if planned.outbound is not None:
        _send_now_or_later(planned.outbound.id)
    if planned.unrouted and settings.out_of_session_callback_url:
        notify_out_of_session.apply_async(
            ({"from": whole.sender, "to": whole.virtual_number, "message_id": whole.message_id},),
            queue=QUEUE_OF[TaskName.NOTIFY_OUT_OF_SESSION].value,
        )


@app.task(name=TaskName.RELAY_INBOUND.value, max_retries=REDIS_MAX_RETRIES, **REDIS_RETRY)
def relay_inbound(payload: dict[str, str]) -> None:
    try:
        inbound = InboundSms.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed inbound payload: %s", exc)
        return
    result = runtime.relay.reassemble(inbound)
    if isinstance(result, Pending):
        if result.first:
            # the countdown stays below the visibility timeout (settings enforce it)
            flush_concat.apply_async(
                (result.group,),
                countdown=settings.concat_timeout_seconds,
                queue=QUEUE_OF[TaskName.FLUSH_CONCAT].value,
            )
    else:
        _relay(result)
    runtime.sweeper.settle("inbound", inbound.message_id)


@app.task(name=TaskName.FLUSH_CONCAT.value, max_retries=REDIS_MAX_RETRIES, **REDIS_RETRY)
def flush_concat(group: str) -> None:
    whole = runtime.relay.flush_partial(group)
    if whole is not None:
        log.info("relaying multi-part message %s with %d part(s) missing", whole.message_id,
                 whole.text.count(MISSING_PART_MARKER))
        _relay(whole)


# Attempts and age are bounded by the outbound record (SMSPROXY_SEND_MAX_ATTEMPTS and
# SMSPROXY_SEND_MAX_AGE_SECONDS), not by Celery's retry count, which also counts waits for the
# rate limit.
@app.task(name=TaskName.SEND_SMS.value, bind=True, max_retries=None, **REDIS_RETRY)
def send_sms(
    self: Task[Any, Any], outbound_id: str, accepted_ids: list[str] | None = None
) -> None:
    if accepted_ids:
        # Vonage took it; only the record is missing: never call Vonage again for it.
        runtime.relay.record_sent(outbound_id, accepted_ids)
        return
    try:
        runtime.relay.send(outbound_id, runtime.vonage())
    except SEND_LATER as exc:
        countdown, kwargs = _send_again(exc)
        raise self.retry(args=(outbound_id,), kwargs=kwargs, countdown=countdown) from exc


@app.task(name=TaskName.RECORD_RECEIPT.value, max_retries=REDIS_MAX_RETRIES, **REDIS_RETRY)
def record_receipt(payload: dict[str, str]) -> None:
    try:
        receipt = DeliveryReceipt.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed receipt payload: %s", exc)
        return
    matched = runtime.messages.apply_receipt(
        receipt.client_ref, receipt.message_id, receipt.status, receipt.err_code,
        retain_body=settings.retain_bodies,
    )
    if matched is None:
        runtime.counters.incr("smsproxy.receipts.unmatched")
    runtime.sweeper.settle("receipt", f"{receipt.message_id}:{receipt.status}")


@app.task(name=TaskName.MAINTAIN_POOL.value)
def maintain_pool() -> None:
    try:
        report = runtime.pool_keeper.maintain(runtime.vonage())
    except VonageFailure:
        return  # logged and counted by the keeper; the next scheduled run starts clean
    _enqueue_sends(report.sends)


@app.task(name=TaskName.SWEEP_STRANDED.value, max_retries=0)
def sweep_stranded() -> None:
    """Re-publish webhook jobs the broker lost and re-queue sends nobody finished."""
    report = runtime.sweeper.sweep(time.time())
    _enqueue_sends(report.sends_requeued)


@app.task(name=TaskName.EXPIRE_CONVERSATIONS.value, max_retries=REDIS_MAX_RETRIES,
          **REDIS_RETRY)
def expire_conversations() -> None:
    ended = runtime.conversations.expire_due()
    for conversation in ended:
        _notify(conversation)
    if ended:
        log.info("expired %d conversation(s)", len(ended))
