"""Every error answers JSON naming the problem; dependency outages answer 503."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from web.queue import QueueUnavailable
from web.services import publisher

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError) -> Response:
        log.warning("redis unavailable: %s", type(exc).__name__)
        g.store_failed = True  # nothing more is written to it in this request (metrics)
        response = error_response(503, "store_unavailable", "the store is unavailable; retry")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(QueueUnavailable)
    def broker_down(exc: QueueUnavailable) -> Response:
        # the broker is the store's Redis: nothing more is written to it in this request
        g.store_failed = publisher().broker_is_store
        response = error_response(503, "queue_unavailable", "the queue is unavailable; retry")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # Log the type and trace, never the request (it carries numbers and bodies).
        log.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, "internal_error", "unexpected error")
