"""Thin tasks: parse the payload, call shared/, enqueue what follows, retry what is transient.

Each task reaches its services through `runtime.current()` (installed by workers/celery_app.py,
or by a test), and enqueues follow-up tasks through the runtime's queue, by name.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import wait
from typing import Any, Concatenate, ParamSpec

from celery import Task, shared_task
from redis.exceptions import RedisError

from shared.callbacks import (
    CallbackFailed,
    CallbackRefused,
    conversation_event,
    deliver_event,
    out_of_session_event,
    participant_event,
)
from shared.conversations import INSIGHT_MAX_ATTEMPTS
from shared.domain import (
    Conversation,
    ConversationStatus,
    DeliveryReceipt,
    InboundSms,
    OutboundSms,
    WebhookFieldError,
)
from shared.inbound_rules import Event
from shared.jobs import TaskName
from shared.logging import bind_log_context
from shared.outbox import job_name
from shared.reassembly import MISSING_PART_MARKER, LatePart, Pending, Reassembled
from shared.receipts import dedupe_id
from shared.sending import InDoubt, RecordLater, RetryLater, Throttled
from shared.vonage_gateway import VonageFailure
from shared.wiring import Services
from workers import runtime
from workers.runtime import HiddenArgsTask, Runtime

log = logging.getLogger(__name__)

REDIS_MAX_RETRIES = 10
# Number Insight attempts are bounded per participant by the domain (INSIGHT_MAX_ATTEMPTS);
# this backstop only stops a create that keeps failing for other reasons.
CREATE_MAX_RETRIES = 2 * INSIGHT_MAX_ATTEMPTS + REDIS_MAX_RETRIES
CALLBACK_MAX_RETRIES = 8
SEND_LATER = (Throttled, RetryLater, InDoubt, RecordLater)
THROTTLE_JITTER_SECONDS = 0.05
P = ParamSpec("P")


def proxy_task(**options: Any) -> Any:
    """Celery's `shared_task` for this app's tasks: arguments hidden from monitoring tools."""
    return shared_task(base=HiddenArgsTask, **options)


def backoff(retries: int, rt: Runtime) -> float:
    """Exponential backoff with full jitter, capped well below the visibility timeout."""
    # send_sms retries without bound (rate-limit waits count): 2.0 ** 1024 overflows a float
    ceiling = min(rt.settings.max_backoff_seconds, 2.0 ** min(retries, 64))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)


def survives_redis_outages(
    run: Callable[Concatenate[Task[Any, Any], P], None],
) -> Callable[Concatenate[Task[Any, Any], P], None]:
    """A Redis that restarts or fails over takes seconds: the task retries through it, with
    backoff below a third of the visibility timeout. Tasks are idempotent, so a retry is safe;
    the task's own `max_retries` bounds how long it keeps trying."""

    @functools.wraps(run)
    def wrapped(task: Task[Any, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            run(task, *args, **kwargs)
        except RedisError as exc:
            countdown = backoff(task.request.retries, runtime.current())
            raise task.retry(exc=exc, countdown=countdown) from exc

    return wrapped


def send_again(exc: Exception, rt: Runtime) -> tuple[float, dict[str, Any]]:
    """When to try a send again and with what: one policy for the inline and the queued path.

    No wait exceeds the backoff cap (a third of the visibility timeout): a longer countdown has
    the broker hand the waiting task out again and again (kombu#337). A send woken before its
    token or its lease is due finds it so and waits again.
    """
    ceiling = rt.settings.max_backoff_seconds
    if isinstance(exc, Throttled):
        # the limiter already spaces the waiters' turns (shared/ratelimit.py); a little jitter
        # keeps workers whose clocks agree from landing on one instant
        return min(ceiling, exc.wait + random.uniform(0, THROTTLE_JITTER_SECONDS)), {}  # noqa: S311
    if isinstance(exc, RetryLater):
        return backoff(exc.attempts, rt), {}
    if isinstance(exc, InDoubt):
        # the lease outlives the visibility timeout on purpose: wait for it in steps below it
        return min(ceiling, exc.wait), {}
    if isinstance(exc, RecordLater):
        # Vonage took it; only the record is missing: the retry records, never re-sends.
        return backoff(0, rt), {"accepted_ids": exc.message_ids}
    raise TypeError(f"not a send to try again: {exc!r}")


def _enqueue_sends(rt: Runtime, outbound_ids: list[str] | tuple[str, ...]) -> None:
    for outbound_id in outbound_ids:
        rt.queue.enqueue(TaskName.SEND_SMS, (outbound_id,))


def _notify(rt: Runtime, conversation: Conversation | None) -> None:
    """Queue a status callback when the marketplace asked for them."""
    if conversation is not None and conversation.callback_url:
        event = conversation.status.value
        rt.queue.enqueue(
            TaskName.NOTIFY_CALLBACK, ({"conversation_id": conversation.id, "event": event},),
            job=job_name("callback", f"{conversation.id}:{event}"),
        )


def _report_owed(svc: Services, conversation: Conversation | None) -> bool:
    """Whether a run that finds the create's outcome already made must report it again.

    The run that made it may have died, or met a Redis error, between the change and queuing
    its callback; until a run settles the create job, the report may be missing. Reporting it
    again may repeat a callback already queued, which is harmless (the event's id is stable);
    once the create is settled, a redelivered create reports nothing.
    """
    return (
        conversation is not None
        and conversation.status in (ConversationStatus.ACTIVE, ConversationStatus.FAILED)
        and svc.outbox.holds("create", conversation.id)
    )


@proxy_task(name=TaskName.CREATE_CONVERSATION.value, bind=True,
             max_retries=CREATE_MAX_RETRIES)
@survives_redis_outages
def create_conversation(self: Task[Any, Any], conversation_id: str) -> None:
    rt = runtime.current()
    svc = rt.services
    bind_log_context(conversation_id=conversation_id)
    try:
        outcome = svc.conversations.establish(conversation_id, rt.accounts(), rt.fan_out)
    except VonageFailure as failure:
        if self.request.retries >= CREATE_MAX_RETRIES:
            failed = svc.conversation_store.finish(
                conversation_id, ConversationStatus.FAILED, "number_insight_unavailable"
            )
            if failed is not None:  # counted like the failures the domain decides
                svc.counters.incr("smsproxy.conversations.failed")
            _notify(rt, failed)
            svc.outbox.settle("create", conversation_id)
            return
        log.info("create %s: transient %s, retrying", conversation_id, failure.code)
        countdown = backoff(self.request.retries, rt)
        svc.outbox.postpone("create", conversation_id, countdown)
        raise self.retry(countdown=countdown) from failure
    if outcome.changed or _report_owed(svc, outcome.conversation):
        # queued first: the marketplace need not wait for the intros
        _notify(rt, outcome.conversation)
    _send_side_by_side(rt, outcome.intro_ids)
    svc.outbox.settle("create", conversation_id)


def _post_event(
    task: Task[Any, Any], rt: Runtime, url: str, event: dict[str, Any], job: tuple[str, str]
) -> None:
    """Deliver a signed event to the marketplace, retried with backoff, then dropped; `job` is
    its (kind, id) in the outbox."""
    secret = rt.settings.callback_secret
    if not secret:
        return
    counters = rt.services.counters
    try:
        deliver_event(url, event, secret, rt.settings.callback_policy)
    except CallbackRefused as refusal:
        # not where the proxy may send (an address inside the network): never retried
        counters.incr("smsproxy.callbacks.refused")
        log.warning("event %s refused: %s", event["id"], refusal)
        return
    except CallbackFailed as failure:
        if task.request.retries >= CALLBACK_MAX_RETRIES:
            counters.incr("smsproxy.callbacks.dropped")
            log.warning("event %s dropped: %s", event["id"], failure)
            return
        counters.incr("smsproxy.callbacks.retried")
        countdown = backoff(task.request.retries, rt)
        rt.services.outbox.postpone(*job, countdown)
        raise task.retry(countdown=countdown) from failure
    counters.incr("smsproxy.callbacks.delivered")


# Retried through a Redis restart as well, so that the event is not lost to one (a repeat of an
# event already delivered is harmless: its id is stable).
@proxy_task(name=TaskName.NOTIFY_CALLBACK.value, bind=True, max_retries=CALLBACK_MAX_RETRIES)
@survives_redis_outages
def notify_callback(self: Task[Any, Any], payload: dict[str, str]) -> None:
    rt = runtime.current()
    conversation_id, status = str(payload.get("conversation_id", "")), str(payload.get("event", ""))
    bind_log_context(conversation_id=conversation_id)
    conversation = rt.services.conversation_store.get(conversation_id)
    if conversation is not None and conversation.callback_url:
        event = conversation_event(conversation, status, rt.services.opt_outs.of(conversation))
        _post_event(self, rt, conversation.callback_url, event,
                    ("callback", f"{conversation_id}:{status}"))
    rt.services.outbox.settle("callback", f"{conversation_id}:{status}")


@proxy_task(name=TaskName.NOTIFY_OUT_OF_SESSION.value, bind=True,
             max_retries=CALLBACK_MAX_RETRIES)
@survives_redis_outages
def notify_out_of_session(self: Task[Any, Any], payload: dict[str, str]) -> None:
    rt = runtime.current()
    url = rt.settings.out_of_session_callback_url
    bind_log_context(message_id=payload.get("message_id"))
    if url:
        event = out_of_session_event(payload["from"], payload["to"], payload["message_id"])
        _post_event(self, rt, url, event, ("oos", payload["message_id"]))
    rt.services.outbox.settle("oos", payload["message_id"])


_PARTICIPANT_EVENTS = frozenset({Event.PARTICIPANT_OPTED_OUT, Event.PARTICIPANT_OPTED_IN})


@proxy_task(name=TaskName.NOTIFY_PARTICIPANT.value, bind=True, max_retries=CALLBACK_MAX_RETRIES)
@survives_redis_outages
def notify_participant(self: Task[Any, Any], payload: dict[str, str]) -> None:
    rt = runtime.current()
    message_id, kind = str(payload.get("message_id", "")), str(payload.get("event", ""))
    conversation = rt.services.conversation_store.get(str(payload.get("conversation_id", "")))
    index = 1 if payload.get("participant") == "1" else 0
    if conversation is not None and conversation.callback_url and kind in _PARTICIPANT_EVENTS:
        event = participant_event(conversation, index, kind, message_id,
                                  rt.services.opt_outs.of(conversation))
        _post_event(self, rt, conversation.callback_url, event, ("participant", message_id))
    rt.services.outbox.settle("participant", message_id)


def _send_now_or_later(rt: Runtime, outbound_id: str, owed: OutboundSms | None = None) -> None:
    """Send a relay from the relay task itself: one task per message instead of two.

    The worker's event loop receives and acknowledges every task one by one, and at volume that
    loop, not the threads, is what limits a worker (measured: docs/performance.md). A send that
    has to wait (the rate limit, a transient failure) goes to the outbound queue as usual.
    """
    if not rt.settings.inline_sends:
        _enqueue_sends(rt, [outbound_id])
        return
    try:
        rt.services.sender.send(outbound_id, rt.accounts(), owed)
    except SEND_LATER as exc:
        countdown, kwargs = send_again(exc, rt)
        rt.queue.enqueue(TaskName.SEND_SMS, (outbound_id,), kwargs, countdown=countdown)


def _send_side_by_side(rt: Runtime, outbound_ids: tuple[str, ...]) -> None:
    """Send a create's intros from the create task, both at once (one on the runtime's fan-out
    thread): a new conversation waits for one provider round trip and no queue hop, instead of
    two more tasks. Each send is claimed before its call, so a redelivered create re-sends
    nothing; a send that has to wait goes to the outbound queue (`_send_now_or_later`)."""
    if not rt.settings.inline_sends or len(outbound_ids) < 2:
        for outbound_id in outbound_ids:
            _send_now_or_later(rt, outbound_id)
        return
    others = [rt.fan_out.submit(_send_named, rt, i) for i in outbound_ids[1:]]
    try:
        # in a copy of the task's context, so that its lines after this one name no send
        contextvars.copy_context().run(_send_named, rt, outbound_ids[0])
    finally:
        wait(others)  # settled either way before the task retries or acknowledges
    for other in others:
        other.result()


def _send_named(rt: Runtime, outbound_id: str) -> None:
    """`_send_now_or_later`, its log lines naming the send (as send_sms's do)."""
    bind_log_context(message_id=outbound_id)
    _send_now_or_later(rt, outbound_id)


def _relay(rt: Runtime, whole: Reassembled) -> None:
    """Carry out what the inbound rules decided for one whole message."""
    carried = rt.services.inbound.handle(whole)
    rt.services.reassembler.release(whole)  # recorded: a run from here on owes nothing new
    for outbound_id in carried.sends:
        _send_now_or_later(rt, outbound_id, carried.fresh.get(outbound_id))
    for event in _PARTICIPANT_EVENTS & set(carried.events):
        if carried.conversation_id is not None:  # numbers stay out of the task's arguments
            rt.queue.enqueue(
                TaskName.NOTIFY_PARTICIPANT,
                ({"conversation_id": carried.conversation_id, "event": event.value,
                  "message_id": whole.message_id, "participant": str(carried.sender_index)},),
                job=job_name("participant", whole.message_id),
            )
    if Event.OUT_OF_SESSION in carried.events:
        rt.queue.enqueue(
            TaskName.NOTIFY_OUT_OF_SESSION,
            ({"from": whole.sender, "to": whole.virtual_number, "message_id": whole.message_id},),
            job=job_name("oos", whole.message_id),
        )


@proxy_task(name=TaskName.RELAY_INBOUND.value, bind=True, max_retries=REDIS_MAX_RETRIES)
@survives_redis_outages
def relay_inbound(self: Task[Any, Any], payload: dict[str, str]) -> None:
    rt = runtime.current()
    bind_log_context(message_id=str(payload.get("messageId", ""))[:64])
    try:
        inbound = InboundSms.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed inbound payload: %s", exc)
        # settled too, or the sweeper would re-publish it for ever (such as a job queued before
        # a stricter validation was deployed)
        rt.services.outbox.settle("inbound", str(payload.get("messageId", "")))
        return
    result = rt.services.reassembler.reassemble(inbound)
    if isinstance(result, Pending):
        if result.first:
            # the countdown stays below the visibility timeout (settings enforce it)
            rt.queue.enqueue(TaskName.FLUSH_CONCAT, (result.group, result.instance),
                             countdown=rt.settings.concat_timeout_seconds,
                             job=job_name("flush", f"{result.group}:{result.instance}"))
    elif isinstance(result, LatePart):
        rt.services.inbound.record_late(result)
    elif isinstance(result, Reassembled):
        _relay(rt, result)
    rt.services.outbox.settle("inbound", inbound.message_id)


@proxy_task(name=TaskName.FLUSH_CONCAT.value, bind=True, max_retries=REDIS_MAX_RETRIES)
@survives_redis_outages
def flush_concat(self: Task[Any, Any], group: str, instance: str) -> None:
    rt = runtime.current()
    whole = rt.services.reassembler.flush_partial(group, instance)
    if whole is not None:
        bind_log_context(message_id=whole.message_id)
        log.info("relaying multi-part message %s with %d run(s) of parts missing",
                 whole.message_id, whole.text.count(MISSING_PART_MARKER))
        _relay(rt, whole)
    rt.services.outbox.settle("flush", f"{group}:{instance}")


# Attempts and age are bounded by the outbound record (SMSPROXY_SEND_MAX_ATTEMPTS and
# SMSPROXY_SEND_MAX_AGE_SECONDS), not by Celery's retry count, which also counts waits for the
# rate limit.
@proxy_task(name=TaskName.SEND_SMS.value, bind=True, max_retries=None)
@survives_redis_outages
def send_sms(
    self: Task[Any, Any], outbound_id: str, accepted_ids: list[str] | None = None
) -> None:
    rt = runtime.current()
    bind_log_context(message_id=outbound_id)
    sender = rt.services.sender
    if accepted_ids:
        # Vonage took it; only the record is missing: never call Vonage again for it.
        sender.record_sent(outbound_id, accepted_ids)
        return
    try:
        sender.send(outbound_id, rt.accounts())
    except SEND_LATER as exc:
        countdown, kwargs = send_again(exc, rt)
        raise self.retry(args=(outbound_id,), kwargs=kwargs, countdown=countdown) from exc


@proxy_task(name=TaskName.RECORD_RECEIPT.value, bind=True, max_retries=REDIS_MAX_RETRIES)
@survives_redis_outages
def record_receipt(self: Task[Any, Any], payload: dict[str, str]) -> None:
    rt = runtime.current()
    svc = rt.services
    try:
        receipt = DeliveryReceipt.from_params(payload)
    except WebhookFieldError as exc:
        log.warning("dropped malformed receipt payload: %s", exc)
        svc.outbox.settle("receipt", f"{payload.get('messageId', '')}:{payload.get('status', '')}")
        return
    bind_log_context(message_id=receipt.message_id)
    matched = svc.messages.apply_receipt(
        receipt.client_ref, receipt.message_id, receipt.status, receipt.err_code,
        retain_body=rt.settings.retain_bodies,
    )
    if matched is None:
        svc.counters.incr("smsproxy.receipts.unmatched")
    svc.outbox.settle("receipt", dedupe_id(receipt))


@proxy_task(name=TaskName.MAINTAIN_POOL.value)
def maintain_pool() -> None:
    rt = runtime.current()
    try:
        report = rt.services.pool_keeper.maintain(rt.accounts())
    except VonageFailure:
        return  # logged and counted by the keeper; the next scheduled run starts clean
    _enqueue_sends(rt, report.sends)


@proxy_task(name=TaskName.SWEEP_STRANDED.value, max_retries=0)
def sweep_stranded() -> None:
    """Re-publish jobs the broker lost, re-queue sends nobody finished, fail creates that never
    finished."""
    rt = runtime.current()
    now = time.time()
    report = rt.services.outbox.sweep(now)
    _enqueue_sends(rt, report.sends_requeued)
    for conversation in rt.services.conversations.fail_overdue(now):
        log.warning("create %s did not finish in time; failed", conversation.id)
        _notify(rt, conversation)


@proxy_task(name=TaskName.EXPIRE_CONVERSATIONS.value, bind=True,
             max_retries=REDIS_MAX_RETRIES)
@survives_redis_outages
def expire_conversations(self: Task[Any, Any]) -> None:
    rt = runtime.current()
    ended = rt.services.conversations.expire_due()
    for conversation in ended:
        _notify(rt, conversation)
    if ended:
        log.info("expired %d conversation(s)", len(ended))
