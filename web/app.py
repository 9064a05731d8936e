"""The Flask app factory."""

from __future__ import annotations

import redis
from flask import Flask

from shared.conversations import Conversations
from shared.logging import configure_logging
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.settings import Settings
from shared.store import ConversationStore
from web import api, openapi, ops, webhooks
from web.cli import register_cli
from web.errors import register_error_handlers
from web.queue import Publisher
from web.services import Services

MAX_REQUEST_BYTES = 64 * 1024


def connect_redis(settings: Settings) -> redis.Redis:
    """A client that fails fast: a webhook must answer 503 quickly, not hang, when Redis is down."""
    timeout = max(settings.publish_timeout_seconds, 0.5)
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        # Stated, not inherited: redis-py's defaults moved between releases (8.x's constructor
        # retries 10 times with backoff). One immediate retry, on a refused or reset connection
        # only, rides over a pooled socket that died with a Redis restart. Never on a timeout:
        # a hung Redis would cost a second timeout, and the command may yet run (SET NX twice).
        retry=redis.retry.Retry(
            redis.backoff.NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
        ),
    )


def create_app(
    settings: Settings,
    *,
    redis_client: redis.Redis | None = None,
    publisher: Publisher | None = None,
) -> Flask:
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    client = redis_client or connect_redis(settings)
    store = ConversationStore(client)
    messages = MessageLog(client)
    counters = Counters(client)
    app.extensions["smsproxy"] = Services(
        settings=settings,
        redis=client,
        store=store,
        messages=messages,
        counters=counters,
        conversations=Conversations(store, messages, counters, settings),
        publisher=publisher or Publisher(settings, client),
    )
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(ops.bp)
    register_cli(app)
    register_error_handlers(app)
    return app
