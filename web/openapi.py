"""The OpenAPI 3.0 description of /v1, served at /v1/openapi.json.

Written by hand rather than generated from the views: the validation rules live in
shared/conversations.py and web/api.py, and tests/web/test_openapi.py keeps this document
true to them (every route documented, generated requests answered as documented).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from shared.conversations import MAX_DISPLAY_NAME, MAX_INTRO_TEXT, MAX_METADATA_BYTES
from shared.domain import ConversationStatus, DeliveryState, MessageKind

bp = Blueprint("openapi", __name__, url_prefix="/v1")

Schema = dict[str, Any]

# Every id the API gives out: uuid4().hex (web/api.py answers 404 for anything else).
_ID_PATTERN = "^[0-9a-f]{32}$"
# The Idempotency-Key rule of web/api.py: 1 to 128 visible ASCII characters.
_IDEMPOTENCY_KEY_PATTERN = "^[!-~]{1,128}$"
# The id the examples show; tests/web/test_openapi.py seeds a conversation under it.
EXAMPLE_ID = "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """OpenAPI 3.0 spelling of "this or null"; an enum must list null itself to admit it."""
    out = {**schema, "nullable": True}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _e164(description: str) -> Schema:
    return {"type": "string", "description": description, "example": "+447400123456"}


def _time(description: str) -> Schema:
    return {"type": "string", "format": "date-time", "description": description}


def _schemas() -> dict[str, Schema]:
    statuses = [s.value for s in ConversationStatus]
    participant_request: Schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["number"],
        "properties": {
            "number": {
                "type": "string",
                "maxLength": 32,
                "description": "A phone number in international form: E.164, or with spaces "
                               "or a 00 prefix; must be a possible number for its country.",
                "example": "+447400123456",
            },
            "display_name": _nullable({
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_DISPLAY_NAME,
                "description": "How the other participant's intro names this one.",
            }),
        },
    }
    create_request: Schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["participants"],
        "properties": {
            "participants": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": participant_request,
                "description": "Exactly two participants with different numbers.",
            },
            "ttl_seconds": {
                "type": "integer",
                "minimum": 60,
                "description": "From 60 to SMSPROXY_MAX_TTL_SECONDS; defaults to "
                               "SMSPROXY_DEFAULT_TTL_SECONDS.",
            },
            "callback_url": _nullable({
                "type": "string",
                "maxLength": 2048,
                "description": "An http(s) URL for signed status events; needs "
                               "SMSPROXY_CALLBACK_SECRET set on the proxy.",
            }),
            "metadata": {
                "type": "object",
                "description": f"Any JSON object of at most {MAX_METADATA_BYTES} bytes, "
                               "echoed back.",
            },
            "intro_text": _nullable({
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INTRO_TEXT,
                "description": "Replaces the intro template for this conversation.",
            }),
        },
        "example": {
            "participants": [
                {"number": "+447400123456", "display_name": "Rita"},
                {"number": "+447400654321", "display_name": "Dev"},
            ],
            "ttl_seconds": 3600,
        },
    }
    participant: Schema = {
        "type": "object",
        "required": ["number", "proxy_number", "display_name", "country"],
        "properties": {
            "number": _e164("The participant's own number."),
            "proxy_number": _nullable(_e164("The number this participant texts; null until "
                                            "the conversation is active.")),
            "display_name": _nullable({"type": "string"}),
            "country": _nullable({"type": "string", "description": "ISO 3166 alpha-2."}),
        },
    }
    conversation: Schema = {
        "type": "object",
        "required": ["id", "status", "failure_reason", "participants", "ttl_seconds",
                     "callback_url", "metadata", "created_at", "expires_at"],
        "properties": {
            "id": {"type": "string", "pattern": _ID_PATTERN, "example": EXAMPLE_ID},
            "status": {"type": "string", "enum": statuses},
            "failure_reason": _nullable({"type": "string"}),
            "participants": {"type": "array", "minItems": 2, "maxItems": 2,
                             "items": _ref("Participant")},
            "ttl_seconds": {"type": "integer"},
            "callback_url": _nullable({"type": "string"}),
            "metadata": {"type": "object"},
            "created_at": _time("When it was requested (UTC)."),
            "expires_at": _nullable(_time("When it ends unless used; null until active.")),
        },
    }
    page: Schema = {
        "type": "object",
        "required": ["conversations", "next_cursor"],
        "properties": {
            "conversations": {"type": "array", "items": _ref("Conversation")},
            "next_cursor": _nullable({
                "type": "string",
                "description": "Pass as `cursor` for the next page; null on the last page.",
            }),
        },
    }
    # web/api.py _render_entry: an inbound entry and an outbound entry share id and direction.
    inbound: Schema = {
        "type": "object",
        "required": ["id", "direction", "from", "parts", "received_at"],
        "properties": {
            "id": {"type": "string"},
            "direction": {"type": "string", "enum": ["inbound"]},
            "from": _e164("Who sent it."),
            "parts": {"type": "integer"},
            "received_at": _time("When the proxy received it."),
            "text": {"type": "string", "description": "Only with SMSPROXY_RETAIN_BODIES=true."},
        },
    }
    outbound: Schema = {
        "type": "object",
        "required": ["id", "direction", "kind", "from", "to", "status", "parts", "attempts",
                     "created_at", "submitted_at", "error_code", "error_reason"],
        "properties": {
            "id": {"type": "string"},
            "direction": {"type": "string", "enum": ["outbound"]},
            "kind": _nullable({"type": "string", "enum": [k.value for k in MessageKind]}),
            "from": _e164("The proxy number it was sent from."),
            "to": _e164("The recipient."),
            "status": _nullable({"type": "string", "enum": [s.value for s in DeliveryState]}),
            "parts": {"type": "integer"},
            "attempts": {"type": "integer"},
            "created_at": _time("When the send was owed."),
            "submitted_at": _nullable(_time("When Vonage accepted it.")),
            "error_code": _nullable({"type": "string"}),
            "error_reason": _nullable({"type": "string"}),
            "text": {"type": "string", "description": "Only with SMSPROXY_RETAIN_BODIES=true."},
        },
    }
    trail: Schema = {
        "type": "object",
        "required": ["conversation_id", "messages"],
        "properties": {
            "conversation_id": {"type": "string", "pattern": _ID_PATTERN},
            "messages": {
                "type": "array",
                "description": "Oldest first.",
                "items": {
                    "oneOf": [_ref("InboundMessage"), _ref("OutboundMessage")],
                    "discriminator": {
                        "propertyName": "direction",
                        "mapping": {
                            "inbound": "#/components/schemas/InboundMessage",
                            "outbound": "#/components/schemas/OutboundMessage",
                        },
                    },
                },
            },
        },
    }
    pool_number: Schema = {
        "type": "object",
        "required": ["number", "country", "live_routes", "state", "monthly_cost"],
        "properties": {
            "number": _e164("The virtual number."),
            "country": {"type": "string", "description": "ISO 3166 alpha-2."},
            "live_routes": {"type": "integer", "minimum": 0},
            "state": {"type": "string"},
            "monthly_cost": _nullable({"type": "string", "description": "As Vonage quotes it."}),
        },
    }
    error: Schema = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                # web/errors.py error_response adds string extras (`field`, `id`).
                "additionalProperties": {"type": "string"},
                "properties": {
                    "code": {"type": "string", "example": "invalid_field"},
                    "message": {"type": "string"},
                    "field": {"type": "string",
                              "description": "The offending part of the request."},
                },
            },
        },
    }
    return {
        "CreateConversation": create_request,
        "Participant": participant,
        "Conversation": conversation,
        "ConversationPage": page,
        "InboundMessage": inbound,
        "OutboundMessage": outbound,
        "MessageTrail": trail,
        "PoolNumber": pool_number,
        "NumberList": {
            "type": "object",
            "required": ["numbers"],
            "properties": {"numbers": {"type": "array", "items": _ref("PoolNumber")}},
        },
        "Error": error,
    }


def _responses() -> dict[str, Schema]:
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                   "required": True, "schema": {"type": "integer"}}}
    return {
        "BadRequest": _error("A malformed or invalid request; `error.field` names the part."),
        "Unauthorized": {
            **_error("A missing or unknown bearer token."),
            "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
        },
        "NotFound": _error("No such conversation."),
        "TooLarge": _error("The body is over 64 KiB."),
        "Unavailable": {
            **_error("Redis or the broker is unreachable; retry after Retry-After seconds."),
            "headers": retry_after,
        },
    }


def _common(*codes: str) -> dict[str, Schema]:
    """The error answers many operations share: 401 from the token check, 503 when Redis
    or the broker is down (web/errors.py), plus any of 400/404/413 named."""
    names = {"400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "413": "TooLarge",
             "503": "Unavailable"}
    return {code: {"$ref": f"#/components/responses/{names[code]}"}
            for code in sorted({*codes, "401", "503"})}


def _conversation_id_parameter() -> Schema:
    return {
        "name": "conversation_id",
        "in": "path",
        "required": True,
        "description": "The conversation's id; anything else answers 404.",
        "schema": {"type": "string", "pattern": _ID_PATTERN, "example": EXAMPLE_ID},
    }


def _paths() -> dict[str, Schema]:
    conversation_ok = _json(_ref("Conversation"), "The conversation.")
    return {
        "/v1/conversations": {
            "post": {
                "operationId": "createConversation",
                "summary": "Request a conversation; numbers are allocated asynchronously.",
                "parameters": [{
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "The same key and body answer the same conversation for "
                                   "24 h; the same key with another body answers 409.",
                    "schema": {"type": "string", "pattern": _IDEMPOTENCY_KEY_PATTERN},
                }],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CreateConversation")}},
                },
                "responses": {
                    "202": {
                        **_json(_ref("Conversation"), "Accepted: the conversation, pending."),
                        "links": {
                            name: {"operationId": target,
                                   "parameters": {"conversation_id": "$response.body#/id"}}
                            for name, target in [
                                ("GetConversation", "getConversation"),
                                ("CloseConversation", "closeConversation"),
                                ("ListConversationMessages", "listConversationMessages"),
                            ]
                        },
                        "headers": {"Location": {
                            "description": "The conversation's URL (absent on an "
                                           "idempotent replay).",
                            "schema": {"type": "string"},
                        }},
                    },
                    "409": _error("Idempotency-Key was used with a different body."),
                    **_common("400", "413"),
                },
            },
            "get": {
                "operationId": "listConversations",
                "summary": "Conversations, newest first, a page at a time.",
                "parameters": [
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": [s.value for s in ConversationStatus]}},
                    {"name": "participant", "in": "query", "required": False,
                     "description": "Only conversations with this number (E.164).",
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "`next_cursor` of the previous page.",
                     "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(_ref("ConversationPage"), "A page of conversations."),
                    **_common("400"),
                },
            },
        },
        "/v1/conversations/{conversation_id}": {
            "parameters": [_conversation_id_parameter()],
            "get": {
                "operationId": "getConversation",
                "summary": "One conversation.",
                "responses": {"200": conversation_ok, **_common("404")},
            },
            "delete": {
                "operationId": "closeConversation",
                "summary": "Close it and free its routes; closing a finished one answers it.",
                "responses": {"200": conversation_ok, **_common("404")},
            },
        },
        "/v1/conversations/{conversation_id}/messages": {
            "parameters": [_conversation_id_parameter()],
            "get": {
                "operationId": "listConversationMessages",
                "summary": "The conversation's audit trail.",
                "responses": {
                    "200": _json(_ref("MessageTrail"), "Every message, oldest first."),
                    **_common("404"),
                },
            },
        },
        "/v1/numbers": {
            "get": {
                "operationId": "listNumbers",
                "summary": "The pool of virtual numbers.",
                "responses": {
                    "200": _json(_ref("NumberList"), "Every pool number."),
                    **_common(),
                },
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document."),
                },
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole document; built on each call so that no caller can mutate a shared copy."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "smsproxy",
            "version": "1",
            "description": "Private SMS conversations between two people over proxy numbers. "
                           "Numbers are E.164; every error is JSON "
                           '`{"error": {"code", "message", "field"?}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    # No token: the document describes the API, it grants nothing.
    return jsonify(openapi_document())
