"""Every error answers JSON naming the problem; dependency outages answer 503.

The answers are worded here once, as plain `Answer`s (status, body bytes, headers), so that the
Flask handlers below and the webhooks' WSGI path (web/webhooks.py) give the same bytes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import Flask, Response
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from shared.api_models import RequestError
from web.json_body import JsonBodyError
from web.queue import QueueUnavailable

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer as bytes, with the headers beyond Content-Type and Content-Length."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def wsgi_status(self) -> str:
        """The status line as werkzeug writes it (`503 SERVICE UNAVAILABLE`)."""
        return f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'UNKNOWN').upper()}"

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """The headers in the order a werkzeug `Response` of this answer lists them."""
        return [("Content-Type", JSON), ("Content-Length", str(len(self.body))),
                *self.headers]

    def response(self) -> Response:
        """The answer as Flask's response."""
        response = Response(self.body, status=self.status, mimetype=JSON)
        for name, value in self.headers:
            response.headers[name] = value
        return response


def json_answer(status: int, payload: object, *headers: tuple[str, str]) -> Answer:
    """`payload` encoded as `jsonify` encodes it outside debug mode (compact, ASCII, keys in
    their order: create_app turns sorting off), with its trailing newline."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, sort_keys=False)
    return Answer(status, f"{text}\n".encode(), headers)


def error_answer(status: int, code: str, message: str, *headers: tuple[str, str],
                 **extra: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message, **extra}}, *headers)


def error_response(status: int, code: str, message: str, **extra: str) -> Response:
    return error_answer(status, code, message, **extra).response()


def http_answer(exc: HTTPException) -> Answer:
    """werkzeug's HTTP errors (400, 404, 405, 413, ...) named by their status's name."""
    code = (exc.name or "error").lower().replace(" ", "_")
    allow: tuple[tuple[str, str], ...] = ()
    valid_methods = getattr(exc, "valid_methods", None)
    if exc.code == 405 and valid_methods:
        allow = (("Allow", ", ".join(valid_methods)),)
    return error_answer(exc.code or 500, code, exc.description or exc.name, *allow)


_RETRY = ("Retry-After", "5")


def store_unavailable(exc: RedisError) -> Answer:
    log.warning("redis unavailable: %s", type(exc).__name__)
    return error_answer(503, "store_unavailable", "the store is unavailable; retry", _RETRY)


def queue_unavailable() -> Answer:
    return error_answer(503, "queue_unavailable", "the queue is unavailable; retry", _RETRY)


def unexpected(exc: Exception) -> Answer:
    # Log the type and trace, never the request (it carries numbers and bodies).
    log.exception("unexpected error: %s", type(exc).__name__)
    return error_answer(500, "internal_error", "unexpected error")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_answer(exc).response()

    # The views parse with shared/api_models.py and web/json_body.py and let their errors rise:
    # one place words every 400 the same way.
    @app.errorhandler(RequestError)
    def invalid_field(exc: RequestError) -> Response:
        return error_response(400, "invalid_field", str(exc), field=exc.field)

    @app.errorhandler(JsonBodyError)
    def invalid_json(exc: JsonBodyError) -> Response:
        return error_response(400, "invalid_json", str(exc), field="body")

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError) -> Response:
        return store_unavailable(exc).response()

    @app.errorhandler(QueueUnavailable)
    def broker_down(exc: QueueUnavailable) -> Response:
        return queue_unavailable().response()

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        return unexpected(exc).response()
