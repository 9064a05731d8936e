"""The marketplace REST API under /v1: bearer tokens, JSON in and out, E.164 numbers.

Each client sees only what it created: another client's conversation answers 404, as if it
did not exist (web/clients.py says who is calling).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from shared.api_models import (
    CONVERSATION_ID_PATTERN,
    IDEMPOTENCY_KEY,
    encode_cursor,
    parse_create_request,
    parse_list_query,
    parse_participant_number,
)
from shared.clock import now
from shared.conversation_store import LiveConversationCap
from shared.conversations import IdempotencyConflict, ParticipantRefused
from shared.domain import Conversation
from shared.jobs import TaskName
from shared.logging import bind_log_context
from shared.outbound import intro_ids
from shared.outbox import job_name
from shared.phone import to_e164
from shared.public_json import conversation_view, trail_entry_view
from web import json_body
from web.clients import current_client, require_token
from web.errors import error_response
from web.queue import QueueUnavailable
from web.services import publisher, services

bp = Blueprint("api", __name__, url_prefix="/v1")

_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)

def _view(conversation: Conversation) -> dict[str, Any]:
    return conversation_view(conversation, services().opt_outs.of(conversation))


def _find(conversation_id: str) -> Conversation | None:
    """The calling client's conversation with this id, or None (unknown, or another's)."""
    if not _CONVERSATION_ID.fullmatch(conversation_id):
        return None
    bind_log_context(conversation_id=conversation_id)
    store = services().conversation_store
    found = store.get(conversation_id)
    return found if found is not None and store.owned_by(found, current_client()) else None


def _not_found(conversation_id: str) -> Response:
    return error_response(404, "not_found", "no such conversation", id=conversation_id[:64])


@bp.post("/conversations")
@require_token
def create_conversation() -> Response | tuple[Response, int]:
    svc = services()
    body = json_body.object_body()
    new = parse_create_request(body, svc.settings)

    key = request.headers.get("Idempotency-Key")
    idempotency = None
    if key is not None:
        try:
            IDEMPOTENCY_KEY.validate_python(key)
        except ValidationError:
            return error_response(400, "invalid_field", "Idempotency-Key: 1 to 128 visible "
                                  "ASCII characters", field="Idempotency-Key")
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        idempotency = (key, fingerprint)
    client = current_client()
    try:
        opened = svc.conversations.open(new, now(), idempotency, client)
    except IdempotencyConflict:
        return error_response(409, "idempotency_conflict",
                              "Idempotency-Key was used with a different body")
    except LiveConversationCap:
        cap = svc.settings.client_max_live_conversations
        return error_response(
            429, "too_many_live_conversations",
            f"this client already holds {cap} live conversations "
            "(SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS); close some first",
        )
    except ParticipantRefused as refused:
        field = f"participants[{refused.index}].number"
        return error_response(400, "invalid_field", f"{field}: {refused.problem}", field=field)
    conversation = opened.conversation
    bind_log_context(conversation_id=conversation.id)
    if not opened.new:
        return jsonify(_view(conversation)), 202
    try:
        publisher().publish(TaskName.CREATE_CONVERSATION, conversation.id,
                            job=job_name("create", conversation.id))
    except QueueUnavailable:
        svc.conversations.abandon(conversation.id, client, key, "queue_unavailable")
        raise
    svc.counters.incr("smsproxy.conversations.requested")
    response = jsonify(_view(conversation))
    response.headers["Location"] = f"/v1/conversations/{conversation.id}"
    return response, 202


@bp.get("/conversations")
@require_token
def list_conversations() -> Response:
    query = parse_list_query(request.args.to_dict())
    page, after = services().conversation_store.page(
        client=current_client(), status=query.status, participant=query.participant,
        cursor=query.cursor, limit=query.limit,
    )
    return jsonify({
        "conversations": [_view(c) for c in page],
        "next_cursor": encode_cursor(after) if after is not None else None,
    })


@bp.get("/conversations/<conversation_id>")
@require_token
def get_conversation(conversation_id: str) -> Response:
    conversation = _find(conversation_id)
    if conversation is None:
        return _not_found(conversation_id)
    return jsonify(_view(conversation))


@bp.delete("/conversations/<conversation_id>")
@require_token
def close_conversation(conversation_id: str) -> Response:
    conversation = _find(conversation_id)
    if conversation is None:
        return _not_found(conversation_id)
    closed = services().conversations.close(conversation_id)
    if closed is not None:
        announce_closed(closed)
    # Closing a conversation that is already over is not an error: it answers its state.
    return jsonify(_view(closed or conversation))


def announce_closed(closed: Conversation) -> None:
    """Owe the marketplace its `closed` event, if it asked for events."""
    if not closed.callback_url:
        return
    try:
        publisher().publish(
            TaskName.NOTIFY_CALLBACK, {"conversation_id": closed.id, "event": "closed"},
            job=job_name("callback", f"{closed.id}:closed"),
        )
    except QueueUnavailable:
        # The close itself succeeded; only the courtesy event is lost.
        services().counters.incr("smsproxy.callbacks.dropped")


@bp.delete("/participants/<number>")
@require_token
def erase_participant(number: str) -> Response:
    """Erase a person from this client's conversations (a privacy law's right to erasure)."""
    msisdn = parse_participant_number(number)
    erased = services().conversations.erase_participant(msisdn, current_client())
    for closed in erased.closed:
        announce_closed(closed)
    services().counters.incr("smsproxy.participants.erased")
    return jsonify({
        "conversations_closed": len(erased.closed),
        "conversations_erased": erased.conversations,
        "messages_erased": erased.messages,
        "keys_deleted": erased.keys,
    })


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
