"""/v1/blocked-numbers: the block list, the whole deployment's, so only operator clients
(SMSPROXY_OPERATORS) may read or change it: one marketplace may not block, nor list, the users of
another."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from shared.api_models import (
    encode_number_cursor,
    parse_block_request,
    parse_blocked_list_query,
    parse_number_path,
)
from shared.clock import now
from shared.public_json import blocked_number_view
from web import json_body
from web.clients import require_operator, require_token
from web.errors import error_response
from web.services import services

bp = Blueprint("blocked_numbers", __name__, url_prefix="/v1")


@bp.put("/blocked-numbers/<number>")
@require_token
@require_operator
def block_number(number: str) -> Response:
    msisdn = parse_number_path(number)
    reason = parse_block_request(json_body.object_body(optional=True))
    entry = services().blocked.block(msisdn, now(), reason)
    services().counters.incr("smsproxy.blocked.added")
    return jsonify(blocked_number_view(entry))


@bp.get("/blocked-numbers/<number>")
@require_token
@require_operator
def get_blocked_number(number: str) -> Response:
    msisdn = parse_number_path(number)
    entry = services().blocked.get(msisdn)
    if entry is None:
        return error_response(404, "not_found", "number is not blocked", field="number")
    return jsonify(blocked_number_view(entry))


@bp.delete("/blocked-numbers/<number>")
@require_token
@require_operator
def unblock_number(number: str) -> Response:
    msisdn = parse_number_path(number)
    # Unblocking a number that is not blocked is not an error: the end state is the same.
    services().blocked.unblock(msisdn)
    return Response(status=204)


@bp.get("/blocked-numbers")
@require_token
@require_operator
def list_blocked_numbers() -> Response:
    query = parse_blocked_list_query(request.args.to_dict())
    entries, more = services().blocked.page(query.cursor, query.limit)
    return jsonify({
        "blocked_numbers": [blocked_number_view(e) for e in entries],
        "next_cursor": encode_number_cursor(entries[-1].msisdn) if more and entries else None,
    })
