"""The OpenAPI 3.1 description of /v1, served at /v1/openapi.json.

Only the paths are written here. Every schema, parameter and header comes from
shared/api_models.py, from the very models that validate the requests, so the document cannot
state other rules than the API applies. 3.1 rather than 3.0 because its schemas are JSON Schema
2020-12, which is what pydantic emits (null is `{"type": "null"}`, not 3.0's `nullable`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import CoreSchema

from shared.api_models import (
    IDEMPOTENCY_KEY,
    RESPONSE_MODELS,
    BlockedNumberPath,
    BlockNumber,
    ConversationId,
    CreateConversation,
    ListBlockedNumbersQuery,
    ListConversationsQuery,
)
from shared.settings import Settings
from web.services import services

bp = Blueprint("openapi", __name__, url_prefix="/v1")

Schema = dict[str, Any]


class _Untitled(GenerateJsonSchema):
    """pydantic titles every field after its name ("Ttl Seconds"): noise in a document."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _schemas(settings: Settings | None) -> tuple[dict[str, Schema], dict[str, Schema]]:
    """components.schemas, and apart from them the list queries' schemas by model name (their
    properties are query parameters, not a body)."""
    queries = (ListConversationsQuery, ListBlockedNumbersQuery)
    _, top = models_json_schema(
        [(CreateConversation, "validation"), (BlockNumber, "validation"),
         *((query, "validation") for query in queries),
         *((model, "serialization") for model in RESPONSE_MODELS)],
        ref_template="#/components/schemas/{model}",
        schema_generator=_Untitled,
    )
    schemas: dict[str, Schema] = top["$defs"]
    query_schemas = {query.__name__: schemas.pop(query.__name__) for query in queries}
    if settings is not None:
        CreateConversation.document_settings(schemas[CreateConversation.__name__], settings)
    return schemas, query_schemas


def _parameter(name: str, where: str, schema: Schema, required: bool = False) -> Schema:
    """A parameter whose schema is a model field's. A request leaves a parameter out rather
    than sending null, so the null that an optional field's schema admits is dropped."""
    schema = dict(schema)
    description = schema.pop("description", None)
    if "anyOf" in schema:
        (present,) = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
        schema.update(present)
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    parameter = {"name": name, "in": where, "required": required, "schema": schema}
    return {**parameter, "description": description} if description else parameter


def _json(name: str, description: str) -> Schema:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses() -> dict[str, Schema]:
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                   "required": True, "schema": {"type": "integer"}}}
    return {
        "BadRequest": _json("Error", "A malformed or invalid request; `error.field` names the "
                                     "part."),
        "Unauthorized": {
            **_json("Error", "A missing or unknown bearer token."),
            "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
        },
        "NotFound": _json("Error", "No such conversation."),
        "Forbidden": _json("Error", "The client is not an operator (`SMSPROXY_OPERATORS`): the "
                                    "block list is the whole deployment's."),
        "NotBlocked": _json("Error", "The number is not blocked."),
        "TooLarge": _json("Error", "The body is over 64 KiB."),
        "TooManyRequests": {
            **_json("Error", "The client's rate limit (`rate_limited`, with Retry-After) or, "
                             "on create, its cap on live conversations "
                             "(`too_many_live_conversations`)."),
            "headers": {"Retry-After": {"description": "Seconds until the rate limit lets "
                                                       "the next request in.",
                                        "schema": {"type": "integer"}}},
        },
        "Unavailable": {
            **_json("Error", "Redis or the broker is unreachable; retry after Retry-After "
                             "seconds."),
            "headers": retry_after,
        },
    }


def _common(*codes: str) -> dict[str, Schema]:
    """The error answers many operations share: 401 from the token check, 429 from the
    client's rate limit, 503 when Redis or the broker is down (web/errors.py), plus any of
    400/404/413 named."""
    names = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
             "413": "TooLarge",
             "429": "TooManyRequests", "503": "Unavailable"}
    return {code: {"$ref": f"#/components/responses/{names[code]}"}
            for code in sorted({*codes, "401", "429", "503"})}


def _query_parameters(query: Schema) -> list[Schema]:
    return [_parameter(name, "query", schema) for name, schema in query["properties"].items()]


def _by_number() -> list[Schema]:
    """The `{number}` path parameter: a number in E.164."""
    return [{
        **_parameter("number", "path", TypeAdapter(BlockedNumberPath).json_schema(),
                     required=True),
        "description": "The number in E.164, such as +447400123456 (`+` written as is or as "
                       "%2B).",
    }]


def _blocked_number_paths(list_query: Schema) -> dict[str, Schema]:
    blocked_ok = _json("BlockedNumber", "The blocked number.")
    by_number = _by_number()
    return {
        "/v1/blocked-numbers": {
            "get": {
                "operationId": "listBlockedNumbers",
                "summary": "Blocked numbers, in number order, a page at a time.",
                "parameters": _query_parameters(list_query),
                "responses": {
                    "200": _json("BlockedNumberPage", "A page of blocked numbers."),
                    **_common("400", "403"),
                },
            },
        },
        "/v1/blocked-numbers/{number}": {
            "parameters": by_number,
            "put": {
                "operationId": "blockNumber",
                "summary": "Block a number: its texts are never relayed and it joins no new "
                           "conversation (a pending one with it fails with `blocked`).",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/BlockNumber"},
                    }},
                },
                "responses": {"200": blocked_ok, **_common("400", "403", "413")},
            },
            "get": {
                "operationId": "getBlockedNumber",
                "summary": "One blocked number; 404 when it is not blocked.",
                "responses": {
                    "200": blocked_ok,
                    "404": {"$ref": "#/components/responses/NotBlocked"},
                    **_common("400", "403"),
                },
            },
            "delete": {
                "operationId": "unblockNumber",
                "summary": "Unblock a number (unblocking one that is not blocked is no error).",
                "responses": {"204": {"description": "Not blocked (any more)."},
                              **_common("400", "403")},
            },
        },
    }


def _paths(queries: dict[str, Schema]) -> dict[str, Schema]:
    list_query = queries[ListConversationsQuery.__name__]
    conversation_ok = _json("Conversation", "The conversation.")
    by_id = [{
        **_parameter("conversation_id", "path", TypeAdapter(ConversationId).json_schema(),
                     required=True),
        "description": "The conversation's id; anything else answers 404.",
    }]
    return {
        "/v1/conversations": {
            "post": {
                "operationId": "createConversation",
                "summary": "Request a conversation; numbers are allocated asynchronously.",
                "parameters": [
                    _parameter("Idempotency-Key", "header", IDEMPOTENCY_KEY.json_schema()),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/CreateConversation"},
                    }},
                },
                "responses": {
                    "202": {
                        **_json("Conversation", "Accepted: the conversation, pending."),
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
                    "409": _json("Error", "Idempotency-Key was used with a different body."),
                    **_common("400", "413"),
                },
            },
            "get": {
                "operationId": "listConversations",
                "summary": "Conversations, newest first, a page at a time.",
                "parameters": _query_parameters(list_query),
                "responses": {
                    "200": _json("ConversationPage", "A page of conversations."),
                    **_common("400"),
                },
            },
        },
        "/v1/conversations/{conversation_id}": {
            "parameters": by_id,
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
            "parameters": by_id,
            "get": {
                "operationId": "listConversationMessages",
                "summary": "The conversation's audit trail.",
                "responses": {
                    "200": _json("MessageTrail", "Every message, oldest first."),
                    **_common("404"),
                },
            },
        },
        "/v1/participants/{number}": {
            "parameters": _by_number(),
            "delete": {
                "operationId": "eraseParticipant",
                "summary": "Erase a person from this client's conversations: close the live "
                           "ones, remove their number and every body they sent or received. "
                           "Idempotent: again, it answers zeros.",
                "responses": {
                    "200": _json("Erasure", "What was erased."),
                    **_common("400"),
                },
            },
        },
        "/v1/numbers": {
            "get": {
                "operationId": "listNumbers",
                "summary": "The pool of virtual numbers.",
                "responses": {"200": _json("NumberList", "Every pool number."), **_common()},
            },
        },
        **_blocked_number_paths(queries[ListBlockedNumbersQuery.__name__]),
        "/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {"description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                },
            },
        },
    }


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The whole document; with `settings`, it also states the limits they set (the longest
    and the default ttl_seconds). Built on each call so that no caller can mutate a shared
    copy."""
    schemas, queries = _schemas(settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsproxy",
            "version": "1",
            "description": "Private SMS conversations between two people over proxy numbers. "
                           "Numbers are E.164; every error is JSON "
                           '`{"error": {"code", "message", "field"?}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(queries),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": _responses(),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    # No token: the document describes the API, it grants nothing.
    return jsonify(openapi_document(services().settings))
