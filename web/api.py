"""The marketplace REST API under /v1: bearer tokens, JSON in and out, E.164 numbers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request

from shared.clock import now
from shared.conversations import IdempotencyConflict, RequestError, parse_create_request
from shared.domain import Conversation, ConversationStatus
from shared.jobs import TaskName
from shared.outbound import intro_ids
from shared.phone import InvalidNumber, to_e164, to_msisdn
from shared.views import conversation_view, trail_entry_view
from web.errors import error_response
from web.queue import QueueUnavailable
from web.services import publisher, services

bp = Blueprint("api", __name__, url_prefix="/v1")

MAX_PAGE = 100
_CONVERSATION_ID = re.compile(r"^[0-9a-f]{32}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

View = TypeVar("View", bound=Callable[..., Response | tuple[Response, int]])


def require_token(view: View) -> View:
    """Bearer-token check; every token is compared in constant time."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Response | tuple[Response, int]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        tokens = services().settings.api_tokens
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("missing bearer token")
        presented = token.strip().encode()
        if not any(hmac.compare_digest(presented, t.encode()) for t in tokens):
            return _unauthorized("invalid bearer token")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _unauthorized(message: str) -> Response:
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="smsproxy"'
    return response


def _find(conversation_id: str) -> Conversation | None:
    if not _CONVERSATION_ID.match(conversation_id):
        return None
    return services().conversation_store.get(conversation_id)


def _not_found(conversation_id: str) -> Response:
    return error_response(404, "not_found", "no such conversation", id=conversation_id[:64])


@bp.post("/conversations")
@require_token
def create_conversation() -> Response | tuple[Response, int]:
    svc = services()
    body = request.get_json(silent=True)
    if body is None:
        return error_response(400, "invalid_json", "body must be a JSON object", field="body")
    try:
        new = parse_create_request(body, svc.settings)
    except RequestError as exc:
        return error_response(400, "invalid_field", str(exc), field=exc.field)

    key = request.headers.get("Idempotency-Key")
    idempotency = None
    if key is not None:
        if not _IDEMPOTENCY_KEY.match(key):
            return error_response(400, "invalid_field", "Idempotency-Key: 1 to 128 visible "
                                  "ASCII characters", field="Idempotency-Key")
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        idempotency = (key, fingerprint)
    try:
        opened = svc.conversations.open(new, now(), idempotency)
    except IdempotencyConflict:
        return error_response(409, "idempotency_conflict",
                              "Idempotency-Key was used with a different body")
    conversation = opened.conversation
    if not opened.new:
        return jsonify(conversation_view(conversation)), 202
    try:
        publisher().publish(TaskName.CREATE_CONVERSATION, conversation.id)
    except QueueUnavailable:
        svc.conversations.abandon(conversation.id, key, "queue_unavailable")
        raise
    svc.counters.incr("smsproxy.conversations.requested")
    response = jsonify(conversation_view(conversation))
    response.headers["Location"] = f"/v1/conversations/{conversation.id}"
    return response, 202


@bp.get("/conversations")
@require_token
def list_conversations() -> Response:
    args = request.args
    unknown = sorted(set(args) - {"status", "participant", "limit", "cursor"})
    if unknown:
        return _bad_query(unknown[0], "is not a known parameter")
    status = None
    if "status" in args:
        try:
            status = ConversationStatus(args["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in ConversationStatus)
            return _bad_query("status", f"must be one of {allowed}")
    participant = None
    if "participant" in args:
        try:
            participant = to_msisdn(args["participant"])
        except InvalidNumber as exc:
            return _bad_query("participant", str(exc))
    raw_limit = args.get("limit", "50")
    if not re.fullmatch(r"[0-9]{1,3}", raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
        return _bad_query("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    cursor = None
    if "cursor" in args:
        cursor = _decode_cursor(args["cursor"])
        if cursor is None:
            return _bad_query("cursor", "is not a cursor this API gave out")
    page, after = services().conversation_store.page(
        status=status, participant=participant, cursor=cursor, limit=int(raw_limit)
    )
    return jsonify({
        "conversations": [conversation_view(c) for c in page],
        "next_cursor": _encode_cursor(after) if after is not None else None,
    })


def _bad_query(field: str, problem: str) -> Response:
    return error_response(400, "invalid_field", f"{field}: {problem}", field=field)


def _encode_cursor(cursor: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0]!r}|{cursor[1]}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[float, str] | None:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        score, _, conversation_id = text.partition("|")
        value = float(score)
    except ValueError:  # bad base64, bad UTF-8 or not a number
        return None
    if not _CONVERSATION_ID.match(conversation_id) or value != value:  # NaN
        return None
    return value, conversation_id


@bp.get("/conversations/<conversation_id>")
@require_token
def get_conversation(conversation_id: str) -> Response:
    conversation = _find(conversation_id)
    if conversation is None:
        return _not_found(conversation_id)
    return jsonify(conversation_view(conversation))


@bp.delete("/conversations/<conversation_id>")
@require_token
def close_conversation(conversation_id: str) -> Response:
    conversation = _find(conversation_id)
    if conversation is None:
        return _not_found(conversation_id)
    closed = services().conversations.close(conversation_id)
    if closed is not None and closed.callback_url:
        try:
            publisher().publish(
                TaskName.NOTIFY_CALLBACK, {"conversation_id": closed.id, "event": "closed"}
            )
        except QueueUnavailable:
            # The close itself succeeded; only the courtesy event is lost.
            services().counters.incr("smsproxy.callbacks.dropped")
    # Closing a conversation that is already over is not an error: it answers its state.
    return jsonify(conversation_view(closed or conversation))


@bp.get("/conversations/<conversation_id>/messages")
@require_token
def conversation_messages(conversation_id: str) -> Response:
    conversation = _find(conversation_id)
    if conversation is None:
        return _not_found(conversation_id)
    retain = services().settings.retain_bodies
    trail = services().messages.trail(
        conversation_id, first=intro_ids(conversation_id), with_text=retain
    )
    entries = [trail_entry_view(e, with_text=retain) for e in trail]
    return jsonify({"conversation_id": conversation_id, "messages": entries})


@bp.get("/numbers")
@require_token
def numbers() -> Response:
    return jsonify(
        {
            "numbers": [
                {
                    "number": to_e164(n.msisdn),
                    "country": n.country,
                    "live_routes": n.routes,
                    "state": n.state,
                    "monthly_cost": n.monthly_cost,
                }
                for n in services().inventory.numbers()
            ]
        }
    )
