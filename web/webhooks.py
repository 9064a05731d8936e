"""Vonage webhooks: verify, validate, dedupe, enqueue (inbound SMS) or record (delivery receipts),
acknowledge. Nothing slow happens here.

The decisions live in `WebhookDesk`, which takes a webhook's method and a reader of its
parameters and gives a plain `Answer` (web/errors.py): it needs no Flask request. Two thin
renderings use it: the Flask views below (every request Flask routes here: GET probes, query
strings, JSON and multipart bodies), and `FormPostPath`, a WSGI wrapper of the app that takes
the common case, a form POST of known length, without Flask's request machinery
(docs/performance.md, benchmark 1, "Fourth pass").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Request, Response, current_app, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from shared.domain import DeliveryReceipt, InboundSms, WebhookFieldError
from shared.jobs import TaskName
from shared.logging import bind_log_context, reset_log_context
from shared.messages import WebhookClaim
from shared.metrics import WEBHOOK_DURATION, WEBHOOKS, HistogramBuffer
from shared.outbox import job_name
from shared.receipts import ReceiptOutcome, dedupe_id
from shared.settings import Settings
from shared.signatures import safe_parameter_names, verify
from shared.wiring import Services
from web import errors, form_body, json_body
from web.errors import Answer, error_answer, json_answer
from web.queue import Publisher, QueueUnavailable, WebhookOutcome
from web.services import publisher_of, services_of, timings_of, unproxied

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_FIELDS = 64
MAX_VALUE_LENGTH = 8192
# A dedupe claim lives this many publish timeouts: longer than any attempt (a store command and
# a publish, each bounded by the timeout), short enough that a leftover delays a retry briefly.
CLAIM_TIMEOUTS = 5

log = logging.getLogger(__name__)

Reader = Callable[[], dict[str, str]]


class _BadPayload(ValueError):
    pass


def _checked(params: dict[str, str]) -> dict[str, str]:
    """The limits every webhook's parameters are held to, however they came."""
    if len(params) > MAX_FIELDS or any(len(v) > MAX_VALUE_LENGTH for v in params.values()):
        raise _BadPayload("too many or too long parameters")
    if not safe_parameter_names(params):
        # before the signature: such a name could make a re-split request verify
        raise _BadPayload("parameter names may hold only letters, digits, '_' and '-'")
    return params


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


def _claim_ttl_ms(publish_timeout_seconds: float) -> int:
    """How long a claim outlives its attempt: several publish timeouts, at least one second."""
    return int(max(1.0, CLAIM_TIMEOUTS * publish_timeout_seconds) * 1000)


def _in_progress(claim_ms: int) -> Answer:
    return error_answer(503, "in_progress", "this message is being queued; retry",
                        ("Retry-After", str(-(-claim_ms // 1000))))


# The acknowledgements are a few fixed bodies: each is encoded once per process.
_STATUS_ANSWERS: dict[str, Answer] = {}


def _status(value: str) -> Answer:
    """`{"status": value}`, 200."""
    found = _STATUS_ANSWERS.get(value)
    if found is None:
        found = _STATUS_ANSWERS[value] = json_answer(200, {"status": value})
    return found


_PROBED = json_answer(200, {"status": "ok"})


class WebhookDesk:
    """Every decision a webhook gets, whichever path brought it: the parameters' limits, the
    signature and whose secret, validation, dedupe and enqueue (or the receipt's record),
    the answer, the counters and timings, and the log context."""

    def __init__(self, svc: Services, door: Publisher, timings: HistogramBuffer) -> None:
        self._svc = svc
        self._door = door
        self._timings = timings

    def receive(self, kind: str, method: str, read: Reader) -> Answer:
        """The one path every webhook takes: read, probe, authenticate, then validate and
        handle (enqueue or record) once; every answer timed and counted by kind and status
        code (the 503s included). `read` gives the parameters or raises werkzeug's HTTP
        errors (a body over the limit, a client gone)."""
        started = time.perf_counter()
        # gunicorn serves one request after another on a thread or greenlet: no id may carry over
        reset_log_context()
        store_failed = False
        try:
            answer = self._answer(kind, method, read)
        except HTTPException as exc:
            answer = errors.http_answer(exc)
        except RedisError as exc:
            answer = errors.store_unavailable(exc)
            store_failed = True  # nothing more is written to it in this request
        except QueueUnavailable:
            answer = errors.queue_unavailable()
            store_failed = self._door.broker_is_store
        except Exception as exc:
            answer = errors.unexpected(exc)
        # Buffered: written about once a second (shared/metrics.py, HistogramBuffer).
        self._timings.observe(WEBHOOK_DURATION, time.perf_counter() - started,
                              {"kind": kind, "code": str(answer.status)})
        # A store that just failed would cost another socket timeout before the 503 leaves.
        if store_failed:
            self._timings.store_failed()
        else:
            self._timings.flush_if_due()
        return answer

    def _answer(self, kind: str, method: str, read: Reader) -> Answer:
        try:
            params = _checked(read())
        except _BadPayload as exc:
            return error_answer(400, "bad_request", str(exc))
        if method == "GET" and not params:
            return _PROBED  # Vonage probes the URL when a number is configured
        rejected = self._authenticate(params, kind)
        if rejected is not None:
            return rejected
        try:
            if kind == "inbound":
                return self._inbound(params)
            return self._receipt(params)
        except WebhookFieldError as exc:
            return error_answer(400, "invalid_field", str(exc), field=exc.field)

    def _authenticate(self, params: dict[str, str], kind: str) -> Answer | None:
        """The signature is judged before anything else, so an unsigned caller learns nothing."""
        settings = self._svc.settings
        secret, problem = _signature_secret(params, settings)
        if problem is None and secret is None:
            return None  # unsigned webhooks allowed (SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS)
        if problem is None and secret is not None:
            problem = verify(params, secret, settings.vonage_signature_method, time.time())
        if problem is None:
            return None
        self._svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "unauthenticated"})
        return error_answer(401, "bad_signature", problem)

    def _inbound(self, params: dict[str, str]) -> Answer:
        inbound = InboundSms.from_params(params, received_at=time.time())
        bind_log_context(message_id=inbound.message_id)
        return self._accept("inbound", inbound.message_id, TaskName.RELAY_INBOUND,
                            inbound.to_payload())

    def _receipt(self, params: dict[str, str]) -> Answer:
        """A receipt is applied to its send's record here (shared/receipts.py): durable once
        Redis answers, a 503 (Vonage retries) if it does not. With SMSPROXY_MIN_REPLICAS_ACKED
        it is queued for the worker as before: its acknowledgement waits for replicas, and
        only the queued path's WAIT follows its write on one connection."""
        receipt = DeliveryReceipt.from_params(params)
        bind_log_context(message_id=receipt.message_id)
        settings = self._svc.settings
        if settings.min_replicas_acked:
            return self._accept("receipt", dedupe_id(receipt), TaskName.RECORD_RECEIPT,
                                receipt.to_payload())
        outcome = self._svc.receipts.record(receipt, dedupe_ttl=settings.dedupe_ttl_seconds,
                                            retain_body=settings.retain_bodies)
        if outcome is ReceiptOutcome.IN_PROGRESS:
            return _in_progress(_claim_ttl_ms(settings.publish_timeout_seconds))
        return _status(outcome.value)

    def _accept(self, kind: str, message_id: str, task: TaskName,
                payload: dict[str, str | None]) -> Answer:
        """Enqueue once per messageId; acknowledge only after the broker has the job."""
        settings = self._svc.settings
        if self._door.atomic_webhooks:
            outcome = self._door.enqueue_webhook(
                kind, message_id, task, payload, settings.dedupe_ttl_seconds)
            if outcome is WebhookOutcome.IN_PROGRESS:
                return _in_progress(_claim_ttl_ms(settings.publish_timeout_seconds))
            return _status(outcome.value)
        return self._accept_in_two_steps(kind, message_id, task, payload)

    def _accept_in_two_steps(self, kind: str, message_id: str, task: TaskName,
                             payload: dict[str, str | None]) -> Answer:
        """For a broker apart from the store: a short claim, the publish, then the marker."""
        svc = self._svc
        claim_ms = _claim_ttl_ms(svc.settings.publish_timeout_seconds)
        claim = svc.messages.claim_webhook(kind, message_id, claim_ms)
        if claim is WebhookClaim.IN_PROGRESS:
            return _in_progress(claim_ms)
        if claim is WebhookClaim.DUPLICATE:
            svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "duplicate"})
            return _status(WebhookOutcome.DUPLICATE.value)
        try:
            self._door.publish(task, payload, job=job_name(kind, message_id))
        except QueueUnavailable as exc:
            # Unless the job may yet reach the broker (a hung Redis: then the claim expires on
            # its own, which limits how soon a second copy can be queued), take the retry at
            # once.
            if not exc.maybe_published:
                try:
                    svc.messages.drop_webhook_claim(kind, message_id)
                except RedisError:
                    log.warning("could not drop the dedupe claim; it expires in %d ms", claim_ms)
            raise
        # The job is in the broker: from here on, nothing may turn this into a 503 (Vonage
        # would retry and, once the claim expired, queue a second copy).
        try:
            svc.messages.confirm_webhook(kind, message_id, svc.settings.dedupe_ttl_seconds)
            svc.counters.count(WEBHOOKS, {"kind": kind, "outcome": "accepted"})
        except RedisError as exc:
            log.warning("job queued, bookkeeping failed: %s", type(exc).__name__)
        return _status(WebhookOutcome.QUEUED.value)


_DESK = "smsproxy.webhook_desk"


def install(app: Flask) -> None:
    """The blueprint, and the desk it and `FormPostPath` answer through (after web/services.py's
    `install`)."""
    app.extensions[_DESK] = WebhookDesk(services_of(app), publisher_of(app), timings_of(app))
    app.register_blueprint(bp)


def desk_of(app: Flask) -> WebhookDesk:
    found: WebhookDesk = app.extensions[_DESK]
    return found


def _flask_params(here: Request) -> dict[str, str]:
    """Webhook parameters from the query string, a form or a JSON body, as strings (`here`
    the request itself, not Flask's proxy: web/services.py, `unproxied`)."""
    # werkzeug's query parsing only when there is a query (Vonage's POSTs have none)
    params: dict[str, str] = (
        dict(here.args.items()) if here.environ.get("QUERY_STRING") else {}
    )
    if here.method == "POST":
        if here.is_json:
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
        elif here.mimetype == form_body.FORM:
            params.update(form_body.form_fields(form_body.body(here)))
        else:
            params.update(here.form.items())  # multipart, or no form at all
    return params


def _view(kind: str) -> Response:
    here = unproxied(request)
    answer = desk_of(unproxied(current_app)).receive(
        kind, here.method, lambda: _flask_params(here))
    return answer.response()


@bp.route("/inbound-sms", methods=["GET", "POST"])
def inbound_sms() -> Response:
    return _view("inbound")


@bp.route("/delivery-receipt", methods=["GET", "POST"])
def delivery_receipt() -> Response:
    return _view("receipt")


_KIND_OF_PATH = {"/webhooks/inbound-sms": "inbound", "/webhooks/delivery-receipt": "receipt"}


def _is_form(content_type: str) -> bool:
    """Whether werkzeug's `request.mimetype` of this Content-Type is the urlencoded form's."""
    return (content_type == form_body.FORM
            or content_type.partition(";")[0].strip().lower() == form_body.FORM)


class FormPostPath:
    """The webhooks' common case without Flask: a urlencoded POST to exactly a webhook's path,
    with a Content-Length within the app's limit, no Transfer-Encoding and no query string,
    answered by the same `WebhookDesk` the views use. Everything else goes to `app` (Flask's
    `wsgi_app`, as create_app built it) untouched: nothing of its body has been read."""

    def __init__(self, app: WSGIApplication, flask_app: Flask) -> None:
        self.app = app
        self._flask = flask_app
        self._desk = desk_of(flask_app)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        kind = _KIND_OF_PATH.get(environ.get("PATH_INFO", ""))
        if (kind is None or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("QUERY_STRING")
                or not _is_form(environ.get("CONTENT_TYPE", ""))):
            return self.app(environ, start_response)
        limit: int | None = self._flask.config["MAX_CONTENT_LENGTH"]
        length = form_body.declared_length(environ, limit)
        if length is None or limit is None:
            return self.app(environ, start_response)  # chunked, no length, a 413: werkzeug's

        def read() -> dict[str, str]:
            return form_body.form_fields(form_body.read(environ, length, limit))

        answer = self._desk.receive(kind, "POST", read)
        start_response(answer.wsgi_status(), answer.wsgi_headers())
        return (answer.body,)
