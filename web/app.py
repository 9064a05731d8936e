"""The Flask app factory."""

from __future__ import annotations

import logging

import redis
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.keys import Keys
from shared.logging import configure_logging, reset_log_context
from shared.settings import Settings
from shared.tracing import configure_tracing
from shared.wiring import Services
from web import api, blocked_numbers, openapi, ops, webhooks
from web.cli import register_cli
from web.clients import install_rate_limit
from web.console import install_console
from web.errors import register_error_handlers
from web.queue import Publisher
from web.services import install

MAX_REQUEST_BYTES = 64 * 1024

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    redis_client: redis.Redis | None = None,
    publisher: Publisher | None = None,
) -> Flask:
    """The web app; raises SettingsError (naming the variable) when web may not run so."""
    settings.validate_for_web()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.vonage_signature_secret:
        log.warning(
            "VONAGE_SIGNATURE_SECRET is not set and SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS=true: "
            "webhooks are NOT authenticated; anyone reaching /webhooks can inject messages"
        )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    if settings.trusted_proxies:
        # Behind a load balancer every request comes from its address: without this, the
        # requests counted per address (no valid token, console sign-ins) would share one
        # count, and one guesser would lock everyone out. Only the last N hops are believed;
        # with none trusted, a client's own X-Forwarded-For is ignored (it could pick a count).
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # gunicorn serves one request after another on a thread or greenlet: no id may carry over
    app.before_request(reset_log_context)
    # Fail fast: a webhook must answer 503 quickly, not hang, when Redis is down.
    built = Services.from_settings(settings, redis_client, fail_fast=True)
    install(app, built, publisher or Publisher(settings, built.redis))
    webhooks.install(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(blocked_numbers.bp)
    install_rate_limit(app, (api.bp, blocked_numbers.bp), settings, built.redis, Keys())
    app.register_blueprint(openapi.bp)
    app.register_blueprint(ops.bp)
    if settings.console_secret_key:
        install_console(app, settings, built.redis, Keys())
    else:
        # secure by default: no key, no console (a default key would sign anyone's cookie)
        log.info("SMSPROXY_CONSOLE_SECRET_KEY is not set: the console (/console) is off")
    register_cli(app)
    register_error_handlers(app)
    provider = configure_tracing(settings, "smsproxy-web")
    if provider is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # probes and scrapes would be most of the spans and tell nothing
        FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
            app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics"
        )
    else:
        # The webhooks' form POSTs answered without Flask's request machinery (a share of
        # their CPU; docs/performance.md, benchmark 1). With tracing on, every request takes
        # Flask's path, where the instrumentation makes each webhook's span.
        app.wsgi_app = webhooks.FormPostPath(  # type: ignore[method-assign]
            app.wsgi_app, app)
    return app
