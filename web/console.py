"""The operations console under /console: server-rendered pages over shared/console.py.

Only when SMSPROXY_CONSOLE_SECRET_KEY is set (web/app.py). A client signs in with its /v1
token; the signed cookie then names a session kept in Redis (shared/console.py), so signing out
ends it everywhere. Every form carries the session's CSRF token (checked before any POST view
runs); sign-in attempts are rate-limited per address in Redis. Pages send no script at all.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from shared.api_models import CONVERSATION_ID_PATTERN
from shared.clock import now
from shared.console import (
    BlockFormError,
    ConsoleAction,
    ConsoleSession,
    Handles,
    SearchError,
    blocked_rows,
    broker_is_redis,
    masked,
    opt_out_pairs,
    overview,
    parse_block_form,
    parse_number,
    parse_search,
    participants,
    pool_by_country,
    read_counters,
    readings,
    trail_rows,
)
from shared.domain import Conversation, ConversationStatus
from shared.gauges import Gauges
from shared.jobs import TaskName
from shared.keys import Keys
from shared.outbound import intro_ids
from shared.phone import mask
from shared.settings import Settings
from web.api import announce_closed
from web.services import publisher, services

bp = Blueprint(
    "console", __name__, url_prefix="/console", template_folder="templates",
    static_folder="static/console", static_url_path="/static",
)

View = TypeVar("View", bound=Callable[..., Any])

_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)
# the pool page's drain forms carry a pool number as stored: digits, no "+"
_MSISDN = re.compile(r"[0-9]{6,15}")
_LOGIN_LIMITER = "smsproxy.console.login_limiter"
_HANDLES = "smsproxy.console.handles"
BLOCKED_PAGE = 50
_OPEN = frozenset({"console.login", "console.static"})
# No script, no framing, forms only to ourselves, nothing fetched from elsewhere.
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def install_console(app: Flask, settings: Settings, client: redis.Redis, keys: Keys) -> None:
    """Serve the console; the session cookie's flags follow the settings."""
    if not settings.console_secret_key:
        raise ValueError("install_console needs SMSPROXY_CONSOLE_SECRET_KEY")
    app.secret_key = settings.console_secret_key
    app.config.update(
        SESSION_COOKIE_NAME="smsproxy_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: a link to a conversation from a ticket opens it; cross-site POSTs still carry
        # no cookie, and carry no CSRF token either.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_secure_cookie,
        PERMANENT_SESSION_LIFETIME=settings.console_session_seconds,
        # the sign-in's lifetime is absolute: the cookie is not re-issued with a later expiry
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    # The same counting as /v1's flask-limiter (the `limits` library, sliding-window counters
    # on the store's connection pool), called directly: only the sign-in POST is limited.
    storage = storage_from_string(
        "redis://", connection_pool=client.connection_pool,  # type: ignore[arg-type]
        key_prefix=f"{keys.prefix}console-login",
    )
    app.extensions[_LOGIN_LIMITER] = (
        SlidingWindowCounterRateLimiter(storage), parse_many(settings.console_login_rate_limit)
    )
    app.extensions[_HANDLES] = Handles(client, settings.console_secret_key, keys)
    app.jinja_env.filters["utc"] = _utc
    app.jinja_env.filters["seconds"] = _seconds
    app.register_blueprint(bp)


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    """A duration as a person reads it: milliseconds below a second."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.0f} min"


def _handles() -> Handles:
    found: Handles = current_app.extensions[_HANDLES]
    return found


# -- session, CSRF, headers ----------------------------------------------------------------


def _csrf_token() -> str:
    """This browser's CSRF token, kept in the signed session cookie (a new one at sign-in)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
        session.permanent = True
    return token


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    signed_in: ConsoleSession | None = g.get("console_session")
    return {
        "csrf_token": _csrf_token,
        "signed_in": signed_in,
        "is_operator": signed_in is not None and _is_operator(signed_in.client),
        "masked": masked,
    }


def _is_operator(client: str) -> bool:
    return client in services().settings.operators


@bp.before_request
def _load_session_and_check_csrf() -> BaseResponse | None:
    sid = session.get("sid")
    g.console_session = (
        services().console_sessions.find(sid, services().settings.api_clients, time.time())
        if isinstance(sid, str) else None
    )
    if request.method == "POST":
        expected = session.get("csrf")
        presented = request.form.get("csrf_token", "")
        if not isinstance(expected, str) or not hmac.compare_digest(
            presented.encode(), expected.encode()
        ):
            abort(400, "the form's security token is missing or stale: reload the page")
    if request.endpoint not in _OPEN and g.console_session is None:
        return redirect(url_for("console.login"))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> tuple[str, int]:
    return render_template(
        "console/error.html", code=exc.code, title=exc.name, message=exc.description
    ), exc.code or 500


def _current() -> ConsoleSession:
    found: ConsoleSession | None = g.get("console_session")
    if found is None:  # every view but the sign-in runs signed in (checked before it)
        raise RuntimeError("_current() outside a signed-in view")
    return found


def operators_only(view: View) -> View:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not _is_operator(_current().client):
            abort(403, "this page is for operators (SMSPROXY_OPERATORS)")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


# -- signing in and out --------------------------------------------------------------------


def _login_allowed() -> tuple[bool, int]:
    """Counts this attempt against the address's limits; (allowed, seconds to wait)."""
    strategy, items = _login_limiter()
    address = request.remote_addr or "-"
    for item in items:
        if not strategy.hit(item, "login", address):
            reset = strategy.get_window_stats(item, "login", address).reset_time
            return False, max(1, int(reset - time.time()) + 1)
    return True, 0


def _login_limiter() -> tuple[SlidingWindowCounterRateLimiter, list[RateLimitItem]]:
    found: tuple[SlidingWindowCounterRateLimiter, list[RateLimitItem]] = (
        current_app.extensions[_LOGIN_LIMITER]
    )
    return found


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if g.console_session is not None:
        return redirect(url_for("console.home"))
    if request.method == "GET":
        return render_template("console/login.html", error=None)
    allowed, wait = _login_allowed()
    if not allowed:
        body = render_template(
            "console/login.html", error=f"Too many attempts: try again in {wait} s."
        )
        return body, 429, {"Retry-After": str(wait)}
    svc = services()
    api_client = svc.settings.api_clients.identify(request.form.get("token", "").strip())
    if api_client is None:
        svc.counters.incr("smsproxy.console.sign_in_failed")
        return render_template("console/login.html", error="That token is not valid."), 401
    started = svc.console_sessions.start(api_client, time.time())
    # a new cookie altogether: nothing of the signed-out browser's session carries over
    session.clear()
    session["sid"] = started.id
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True
    svc.console_audit.record(api_client.name, ConsoleAction.SIGN_IN)
    return redirect(url_for("console.home"))


@bp.post("/logout")
def logout() -> BaseResponse:
    current = _current()
    services().console_sessions.end(current.id)
    _handles().forget(current.id)
    services().console_audit.record(current.client, ConsoleAction.SIGN_OUT)
    session.clear()
    flash("Signed out.")
    return redirect(url_for("console.login"))


# -- pages ---------------------------------------------------------------------------------


@bp.get("/", strict_slashes=False)
def home() -> Any:
    if not _is_operator(_current().client):
        return redirect(url_for("console.conversations"))
    svc = services()
    # the very gauges /metrics reads, over whichever Redis holds the queues
    gauges = Gauges(svc.redis, svc.outbox.queues_client, svc.inventory,
                    svc.settings.pool_targets)
    shown = overview(
        read_counters(svc.counters),
        readings(gauges.operational(), queues_read=broker_is_redis(svc.settings.broker_url)),
        pool_by_country(svc.inventory, svc.settings.pool_targets),
    )
    return render_template("console/overview.html", overview=shown)


@bp.get("/conversations")
def conversations() -> str:
    raw_status = request.args.get("status", "")
    status = ConversationStatus(raw_status) if raw_status in set(ConversationStatus) else None
    page, _ = services().conversation_store.page(
        client=_current().client, status=status, limit=50
    )
    return render_template(
        "console/conversations.html", conversations=page, status=status, heading=None,
        statuses=list(ConversationStatus), error=None,
    )


@bp.post("/conversations/search")
def search() -> Any:
    """POSTed, so that a number searched for never sits in a URL, a history or a log."""
    try:
        query = parse_search(request.form.get("q", ""))
    except SearchError as exc:
        return render_template(
            "console/conversations.html", conversations=[], status=None, heading=None,
            statuses=list(ConversationStatus), error=str(exc),
        ), 400
    if query.conversation_id is not None:
        return redirect(url_for("console.conversation", conversation_id=query.conversation_id))
    msisdn = query.msisdn or ""
    page, _ = services().conversation_store.page(
        client=_current().client, participant=msisdn, limit=50
    )
    return render_template(
        "console/conversations.html", conversations=page, status=None,
        heading=f"Conversations with {masked(msisdn)}",
        statuses=list(ConversationStatus), error=None,
    )


def _find(conversation_id: str) -> Conversation:
    """The signed-in client's conversation, or 404 (unknown and another's look the same)."""
    if not _CONVERSATION_ID.fullmatch(conversation_id):
        abort(404, "no such conversation")
    store = services().conversation_store
    found = store.get(conversation_id)
    if found is None or not store.owned_by(found, _current().client):
        abort(404, "no such conversation")
    return found


@bp.get("/conversations/<conversation_id>")
def conversation(conversation_id: str) -> str:
    found = _find(conversation_id)
    svc = services()
    retain = svc.settings.retain_bodies
    trail = svc.messages.trail(found.id, first=intro_ids(found.id), with_text=retain)
    opted_out = svc.opt_outs.get_many(opt_out_pairs(found))
    return render_template(
        "console/conversation.html", conversation=found, people=participants(found, opted_out),
        trail=trail_rows(found, trail, with_text=retain),
    )


@bp.post("/conversations/<conversation_id>/close")
def close(conversation_id: str) -> BaseResponse:
    found = _find(conversation_id)
    closed = services().conversations.close(found.id)
    if closed is not None:
        announce_closed(closed)
        services().console_audit.record(_current().client, ConsoleAction.CLOSE, found.id)
        flash("Conversation closed; its routes are free.")
    else:
        flash(f"Nothing to close: the conversation is {found.status.value}.")
    return redirect(url_for("console.conversation", conversation_id=found.id))


@bp.get("/pool")
@operators_only
def pool() -> str:
    svc = services()
    return render_template(
        "console/pool.html", countries=pool_by_country(svc.inventory, svc.settings.pool_targets)
    )


@bp.post("/pool/maintain")
@operators_only
def run_maintenance() -> BaseResponse:
    # the same task beat runs, through web's one door to the broker; it runs under the pool
    # lock, so a click during a scheduled run does nothing twice
    publisher().publish(TaskName.MAINTAIN_POOL, None)
    services().console_audit.record(_current().client, ConsoleAction.RUN_MAINTENANCE)
    flash("Pool maintenance is queued; it runs on a worker of the pool queue.")
    return redirect(url_for("console.pool"))


@bp.post("/pool/drain")
@operators_only
def drain() -> BaseResponse:
    msisdn = request.form.get("number", "")
    if not _MSISDN.fullmatch(msisdn):
        abort(400, "not a number of the pool")
    if services().pool_keeper.drain(msisdn):
        services().console_audit.record(_current().client, ConsoleAction.DRAIN, mask(msisdn))
        flash(f"Number {mask(msisdn)} is draining: no new conversations on it.")
    else:
        flash(f"Number {mask(msisdn)} is not an active number of the pool; nothing changed.")
    return redirect(url_for("console.pool"))


@bp.get("/audit")
@operators_only
def audit() -> str:
    return render_template("console/audit.html", entries=services().console_audit.recent())


@bp.get("/blocked")
@operators_only
def blocked() -> tuple[str, int]:
    """The block list, a page at a time; `after` is a handle, never a number."""
    after = None
    if request.args.get("after"):
        after = _handles().resolve(_current().id, request.args["after"])
        if after is None:
            abort(404, "that page of the list is gone: start from the first page")
    return _blocked_page(after)


def _blocked_page(
    after: str | None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    entries, more = services().blocked.page(after, BLOCKED_PAGE)
    handles = _handles().remember(_current(), [e.msisdn for e in entries], now())
    rows = blocked_rows(entries, handles)
    body = render_template(
        "console/blocked.html", rows=rows, error=error, first_page=after is None,
        next_after=rows[-1].handle if more and rows else None,
    )
    return body, status


@bp.post("/blocked")
@operators_only
def block() -> Any:
    """Block a number typed into the form (POSTed: the number never enters a URL)."""
    try:
        form = parse_block_form(request.form.get("number", ""), request.form.get("reason", ""))
    except BlockFormError as exc:
        return _blocked_page(None, error=str(exc), status=400)
    svc = services()
    # the same store, and the same count, as PUT /v1/blocked-numbers
    svc.blocked.block(form.msisdn, now(), form.reason)
    svc.counters.incr("smsproxy.blocked.added")
    svc.console_audit.record(_current().client, ConsoleAction.BLOCK, mask(form.msisdn))
    flash(f"Number {masked(form.msisdn)} is blocked: nothing is relayed from or to it.")
    return redirect(url_for("console.blocked"))


@bp.post("/blocked/unblock")
@operators_only
def unblock() -> Any:
    """Unblock by a row's handle, or by the number typed again."""
    handle = request.form.get("handle", "")
    if handle:
        msisdn = _handles().resolve(_current().id, handle)
        if msisdn is None:
            abort(404, "that entry is not on a page you were shown: reload the list")
    else:
        try:
            msisdn = parse_number(request.form.get("number", ""))
        except BlockFormError as exc:
            return _blocked_page(None, error=str(exc), status=400)
    if services().blocked.unblock(msisdn):
        services().console_audit.record(_current().client, ConsoleAction.UNBLOCK, mask(msisdn))
        flash(f"Number {masked(msisdn)} is unblocked.")
    else:
        flash(f"Number {masked(msisdn)} was not blocked; nothing changed.")
    return redirect(url_for("console.blocked"))
