"""Who is calling /v1: the bearer token names a client; each client has its own rate limit.

The limit is flask-limiter's, counted in the store's Redis (so that every gunicorn worker and
every web host share one count per client), by a sliding-window counter: two counters per client
and window, not one entry per request. A request without a known token is counted by its address
instead, which also slows down guessing tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

import redis
from flask import Blueprint, Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded

from shared.clients import ApiClient
from shared.keys import Keys
from shared.settings import Settings
from web.errors import error_response
from web.services import services

View = TypeVar("View", bound=Callable[..., Response | tuple[Response, int]])

def presented_client() -> ApiClient | None:
    """The client whose bearer token this request carries (worked out once per request)."""
    if "api_client" not in g:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        g.api_client = (
            services().settings.api_clients.identify(token)
            if scheme.lower() == "bearer" and token else None
        )
    found: ApiClient | None = g.api_client
    return found


def current_client() -> str:
    """The calling client's name; only inside a view behind `require_token`."""
    client = presented_client()
    if client is None:
        raise RuntimeError("current_client() outside require_token")
    return client.name


def require_token(view: View) -> View:
    """The request must carry a client's bearer token."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Response | tuple[Response, int]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("missing bearer token")
        if presented_client() is None:
            return _unauthorized("invalid bearer token")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def require_operator(view: View) -> View:
    """Behind `require_token`: the client must be an operator (SMSPROXY_OPERATORS). What such
    a view changes is the whole deployment's, not one client's."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Response | tuple[Response, int]:
        if current_client() not in services().settings.operators:
            return error_response(
                403, "forbidden",
                "only operator clients (SMSPROXY_OPERATORS) may do this: it acts on the whole "
                "deployment",
            )
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _unauthorized(message: str) -> Response:
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="smsproxy"'
    return response


def _rate_key() -> str:
    client = presented_client()
    return f"client:{client.name}" if client is not None else f"addr:{request.remote_addr}"


def _breached(exc: RateLimitExceeded) -> Response:
    # flask-limiter then adds Retry-After (seconds until the window lets one more in) to this
    # answer, with its other rate-limit headers.
    return error_response(
        429, "rate_limited", f"too many requests: at most {exc.limit.limit} for this client"
    )


_HOOKS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs")


def _confine_hooks(app: Flask, install: Callable[[], Limiter], blueprints: Sequence[Blueprint]
                   ) -> Limiter:
    """Run `install`, then move the request hooks it added for the whole app (flask-limiter's
    check before, its headers after, its context reset at teardown) to `blueprints` alone.

    flask-limiter (4.1) installs them for every request of the app; on a webhook, which no
    limit covers, they resolved limits, exemptions and meta limits, added no header and reset
    a context, for nothing (docs/performance.md, benchmark 1). Flask runs a blueprint's hooks
    for its own requests only. tests/web/test_clients.py checks that
    /v1 and the block list are still limited and that webhooks never are.
    """
    before = {name: list(getattr(app, name).get(None, ())) for name in _HOOKS}
    limiter = install()
    for name in _HOOKS:
        hooks = getattr(app, name)
        added = [hook for hook in hooks.get(None, ()) if hook not in before[name]]
        if not added:
            continue
        hooks[None] = before[name]
        for blueprint in blueprints:
            hooks.setdefault(blueprint.name, []).extend(added)
    return limiter


def install_rate_limit(
    app: Flask, blueprints: Sequence[Blueprint], settings: Settings, client: redis.Redis,
    keys: Keys,
) -> Limiter | None:
    """Limit every route of `blueprints` per client, as SMSPROXY_API_RATE_LIMIT says (one
    count per client over all of them)."""
    if settings.api_rate_limit is None:
        return None
    # the store's own connection pool: its timeouts and retry policy, no second pool
    # (flask-limiter's annotation allows only strings and numbers; it passes them to redis-py)
    storage_options: dict[str, Any] = {
        "connection_pool": client.connection_pool,
        "key_prefix": f"{keys.prefix}ratelimit",
    }
    limiter = _confine_hooks(app, lambda: Limiter(
        key_func=_rate_key,
        app=app,
        storage_uri="redis://",
        storage_options=storage_options,
        strategy="sliding-window-counter",
        headers_enabled=True,
        retry_after="delta-seconds",
        # Redis down: let the request through; the view then meets the outage itself and
        # answers 503, rather than the limiter answering 500.
        swallow_errors=True,
        in_memory_fallback_enabled=False,
    ), blueprints)
    shared = limiter.shared_limit(settings.api_rate_limit, scope="v1", key_func=_rate_key)
    for blueprint in blueprints:
        shared(blueprint)
    app.register_error_handler(RateLimitExceeded, _breached)
    return limiter
