"""Vonage webhooks: verify, validate, dedupe, enqueue (inbound SMS) or record (delivery receipts),
acknowledge. Nothing slow happens here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request
from redis.exceptions import RedisError

from shared.domain import DeliveryReceipt, InboundSms, WebhookFieldError
from shared.jobs import TaskName
from shared.logging import bind_log_context
from shared.messages import WebhookClaim
from shared.metrics import WEBHOOK_DURATION, WEBHOOKS
from shared.outbox import job_name
from shared.receipts import ReceiptOutcome, dedupe_id
from shared.settings import Settings
from shared.signatures import safe_parameter_names, verify
from shared.wiring import Services
from web import form_body, json_body
from web.errors import error_response
from web.queue import QueueUnavailable, WebhookOutcome
from web.services import publisher_of, services_of, timings_of, unproxied

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_FIELDS = 64
MAX_VALUE_LENGTH = 8192
# A dedupe claim lives this many publish timeouts: longer than any attempt (a store command and
# a publish, each bounded by the timeout), short enough that a leftover delays a retry briefly.
CLAIM_TIMEOUTS = 5

log = logging.getLogger(__name__)


class _BadPayload(ValueError):
    pass


@bp.before_request
def _start_clock() -> None:
    g.webhook_started = time.perf_counter()


@bp.after_request
def _time_answer(response: Response) -> Response:
    """Every answer a webhook gets, timed and counted by kind and status code (the 503s
    included). Buffered: written about once a second (shared/metrics.py, HistogramBuffer)."""
    here = unproxied(g)
    started = here.pop("webhook_started", None)
    kind = _KIND_OF.get(request.endpoint or "")
    if started is not None and kind is not None:
        buffer = timings_of(unproxied(current_app))
        buffer.observe(
            WEBHOOK_DURATION, time.perf_counter() - started,
            {"kind": kind, "code": str(response.status_code)},
        )
        # A store that just failed would cost another socket timeout before the 503 leaves.
        if here.get("store_failed"):
            buffer.store_failed()
        else:
            buffer.flush_if_due()
    return response


def _params(request: Request) -> dict[str, str]:
    """Webhook parameters from the query string, a form or a JSON body, as strings (`request`
    the request itself, not Flask's proxy: web/services.py, `unproxied`)."""
    # werkzeug's query parsing only when there is a query (Vonage's POSTs have none)
    params: dict[str, str] = (
        dict(request.args.items()) if request.environ.get("QUERY_STRING") else {}
    )
    if request.method == "POST":
        if request.is_json:
            try:
                body = json_body.request_json()
            except json_body.JsonBodyError as exc:
                raise _BadPayload(str(exc)) from None
            if not isinstance(body, dict):
                raise _BadPayload("body must be a JSON object")
            for key, value in body.items():
                if isinstance(value, dict | list):
                    raise _BadPayload(f"{key} must be a plain value")
                params[str(key)] = "" if value is None else str(value)
        elif request.mimetype == form_body.FORM:
            params.update(form_body.form_fields(form_body.body(request)))
        else:
            params.update(request.form.items())  # multipart, or no form at all
    if len(params) > MAX_FIELDS or any(len(v) > MAX_VALUE_LENGTH for v in params.values()):
        raise _BadPayload("too many or too long parameters")
    if not safe_parameter_names(params):
        # before the signature: such a name could make a re-split request verify
        raise _BadPayload("parameter names may hold only letters, digits, '_' and '-'")
    return params


def _authenticate(params: dict[str, str], kind: str, svc: Services) -> Response | None:
    """The signature is judged before anything else, so an unsigned caller learns nothing."""
    settings = svc.settings
    secret, problem = _signature_secret(params, settings)
    if problem is None and secret is None:
        return None  # unsigned webhooks allowed (SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS)
    if problem is None and secret is not None:
        problem = verify(params, secret, settings.vonage_signature_method, time.time())
    if problem is None:
        return None
    svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "unauthenticated"})
    return error_response(401, "bad_signature", problem)


def _signature_secret(params: dict[str, str], settings: Settings) -> tuple[str | None, str | None]:
    """(the secret to verify with, None) or (None, why the webhook is refused).

    One account: its secret, whatever `api-key` says (as before several accounts existed).
    Several: the account the webhook's `api-key` names, so that one account's secret never
    vouches for another's webhooks; a webhook without `api-key` cannot be attributed and is
    refused. The signature covers `api-key` too: it cannot be swapped for another account's.
    """
    accounts = settings.listed_vonage_accounts
    if not accounts:
        # VONAGE_SIGNATURE_SECRET alone: web needs no API key to check webhooks.
        return settings.vonage_signature_secret, None
    if len(accounts) == 1:
        return accounts.accounts[0].signature_secret, None
    api_key = params.get("api-key", "")
    if not api_key:
        return None, "missing api-key"
    account = accounts.get(api_key)
    if account is None:
        return None, "unknown api-key"
    return account.signature_secret, None


def _accept(app: Flask, kind: str, message_id: str, task: TaskName,
            payload: dict[str, str | None]) -> Response:
    """Enqueue once per messageId; acknowledge only after the broker has the job."""
    svc = services_of(app)
    door = publisher_of(app)
    if door.atomic_webhooks:
        outcome = door.enqueue_webhook(
            kind, message_id, task, payload, svc.settings.dedupe_ttl_seconds
        )
        if outcome is WebhookOutcome.IN_PROGRESS:
            return _in_progress(_claim_ttl_ms(svc.settings.publish_timeout_seconds))
        return _answer(app, outcome)
    return _accept_in_two_steps(app, kind, message_id, task, payload)


# The acknowledgements' bodies, as jsonify wrote them the first time, per app: a webhook's
# answer is one of a few fixed bodies, and encoding each again was a share of its CPU.
_ANSWERS = "smsproxy.webhook_answers"


def _answer(app: Flask, outcome: WebhookOutcome) -> Response:
    """`jsonify({"status": outcome})`, its body encoded once per app."""
    answers: dict[WebhookOutcome, tuple[bytes, str]] = app.extensions.setdefault(
        _ANSWERS, {})
    found = answers.get(outcome)
    if found is None:
        first = jsonify({"status": outcome.value})
        answers[outcome] = (first.get_data(), first.mimetype or "application/json")
        return first
    body, mimetype = found
    return app.response_class(body, mimetype=mimetype)


def _in_progress(claim_ms: int) -> Response:
    response = error_response(503, "in_progress", "this message is being queued; retry")
    response.headers["Retry-After"] = str(-(-claim_ms // 1000))
    return response


def _accept_in_two_steps(
    app: Flask, kind: str, message_id: str, task: TaskName, payload: dict[str, str | None]
) -> Response:
    """For a broker apart from the store: a short claim, the publish, then the marker."""
    svc = services_of(app)
    claim_ms = _claim_ttl_ms(svc.settings.publish_timeout_seconds)
    claim = svc.messages.claim_webhook(kind, message_id, claim_ms)
    if claim is WebhookClaim.IN_PROGRESS:
        return _in_progress(claim_ms)
    if claim is WebhookClaim.DUPLICATE:
        svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "duplicate"})
        return _answer(app, WebhookOutcome.DUPLICATE)
    try:
        publisher_of(app).publish(task, payload, job=job_name(kind, message_id))
    except QueueUnavailable as exc:
        # Unless the job may yet reach the broker (a hung Redis: then the claim expires on its
        # own, which limits how soon a second copy can be queued), take the retry at once.
        if not exc.maybe_published:
            try:
                svc.messages.drop_webhook_claim(kind, message_id)
            except RedisError:
                log.warning("could not drop the dedupe claim; it expires in %d ms", claim_ms)
        raise
    # The job is in the broker: from here on, nothing may turn this into a 503 (Vonage would
    # retry and, once the claim expired, queue a second copy).
    try:
        svc.messages.confirm_webhook(kind, message_id, svc.settings.dedupe_ttl_seconds)
        svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "accepted"})
    except RedisError as exc:
        log.warning("job queued, bookkeeping failed: %s", type(exc).__name__)
    return _answer(app, WebhookOutcome.QUEUED)


def _claim_ttl_ms(publish_timeout_seconds: float) -> int:
    """How long a claim outlives its attempt: several publish timeouts, at least one second."""
    return int(max(1.0, CLAIM_TIMEOUTS * publish_timeout_seconds) * 1000)


def _receive(kind: str, handle: Callable[[dict[str, str], Flask], Response]) -> Response:
    """The one path every webhook takes: read, probe, authenticate, then validate and handle
    (enqueue or record) once. The request and the app are taken from Flask's proxies once
    (web/services.py, `unproxied`) and handed down."""
    here = unproxied(request)
    app = unproxied(current_app)
    try:
        params = _params(here)
    except _BadPayload as exc:
        return error_response(400, "bad_request", str(exc))
    if here.method == "GET" and not params:
        return jsonify({"status": "ok"})  # Vonage probes the URL when a number is configured
    rejected = _authenticate(params, kind, services_of(app))
    if rejected is not None:
        return rejected
    try:
        return handle(params, app)
    except WebhookFieldError as exc:
        return error_response(400, "invalid_field", str(exc), field=exc.field)


def _inbound(params: dict[str, str], app: Flask) -> Response:
    inbound = InboundSms.from_params(params, received_at=time.time())
    bind_log_context(message_id=inbound.message_id)
    return _accept(app, "inbound", inbound.message_id, TaskName.RELAY_INBOUND, inbound.to_payload())


def _receipt(params: dict[str, str], app: Flask) -> Response:
    """A receipt is applied to its send's record here (shared/receipts.py): durable once Redis
    answers, a 503 (Vonage retries) if it does not. With SMSPROXY_MIN_REPLICAS_ACKED it is
    queued for the worker as before: its acknowledgement waits for replicas, and only the
    queued path's WAIT follows its write on one connection."""
    receipt = DeliveryReceipt.from_params(params)
    bind_log_context(message_id=receipt.message_id)
    svc = services_of(app)
    settings = svc.settings
    if settings.min_replicas_acked:
        return _accept(app, "receipt", dedupe_id(receipt), TaskName.RECORD_RECEIPT,
                       receipt.to_payload())
    outcome = svc.receipts.record(receipt, dedupe_ttl=settings.dedupe_ttl_seconds,
                                  retain_body=settings.retain_bodies)
    if outcome is ReceiptOutcome.IN_PROGRESS:
        return _in_progress(_claim_ttl_ms(settings.publish_timeout_seconds))
    return jsonify({"status": outcome.value})


_KIND_OF = {"webhooks.inbound_sms": "inbound", "webhooks.delivery_receipt": "receipt"}


@bp.route("/inbound-sms", methods=["GET", "POST"])
def inbound_sms() -> Response:
    return _receive("inbound", _inbound)


@bp.route("/delivery-receipt", methods=["GET", "POST"])
def delivery_receipt() -> Response:
    return _receive("receipt", _receipt)
