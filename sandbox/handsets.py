"""The handsets page: each simulated phone's texts, a box to text a number, a new conversation.

A development tool, served on a listener of its own (`--handsets-port`), plain HTTP on loopback
unless `--handsets-allow-remote`: nothing serves it unless asked, so the compose sandbox and any
image never do. Message bodies are hostile input: Jinja escapes everything it renders, and a
Content-Security-Policy forbids inline script on top of that.

A conversation is started the way a marketplace would, through the proxy's public REST API
(`POST /v1/conversations`), called from here, server side: the bearer token stays in this
process's environment, never in the page, and the sandbox still imports nothing of the proxy.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import (
    Flask,
    Response,
    abort,
    flash,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from sandbox.carrier import Carrier
from sandbox.config import SandboxConfig, is_loopback
from sandbox.control import BadRequest, check_handset_text
from sandbox.phones import is_msisdn, lookup
from sandbox.sms import MAX_TEXT_LENGTH
from sandbox.state import State

_HERE = Path(__file__).resolve().parent
# A create waits on web only to be queued (202); a slow answer means web is in trouble.
API_TIMEOUT = (3.0, 10.0)
# What the page sends to the browser: nothing but its own script and style, no framing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Entry:
    """One line of a phone's timeline: a text it received or sent."""

    direction: str  # "in" (from a virtual number) or "out" (this phone texted it)
    other: str
    text: str
    at: str

    @property
    def clock(self) -> str:
        """`HH:MM:SS` of the UTC time, which is all a phone screen has room for."""
        return self.at[11:19]


class ProxyApi:
    """The proxy's `/v1` API, as the marketplace calls it."""

    def __init__(self, base_url: str, token: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token

    def create_conversation(
        self, participants: list[dict[str, str]], idempotency_key: str
    ) -> tuple[bool, str]:
        """(True, "id status") once accepted, else (False, the API's reason)."""
        try:
            with requests.Session() as session:
                session.trust_env = False  # an environment proxy must not see the token
                response = session.post(
                    f"{self._base_url}/v1/conversations",
                    json={"participants": participants},
                    headers={
                        "Authorization": f"Bearer {self._token}",
                        "Idempotency-Key": idempotency_key,
                    },
                    timeout=API_TIMEOUT,
                )
        except requests.RequestException as error:
            return False, f"the proxy API did not answer: {type(error).__name__}"
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code == 202 and isinstance(body, dict):
            return True, f"{body.get('id')} ({body.get('status')})"
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else None
        return False, f"HTTP {response.status_code}: {detail or response.reason}"


def create_handsets_app(config: SandboxConfig, state: State, carrier: Carrier) -> Flask:
    """The page's WSGI app, over the same state and carrier as the Vonage APIs."""
    app = Flask(
        __name__,
        template_folder=str(_HERE / "templates"),
        static_folder=str(_HERE / "static"),
        static_url_path="/handsets/static",
    )
    # Flashed notices ride in a signed cookie; the key lives as long as the process.
    app.secret_key = secrets.token_hex(32)
    csrf_token = secrets.token_urlsafe(32)
    api = (
        ProxyApi(config.proxy_api_url, config.proxy_api_token)
        if config.proxy_api_url and config.proxy_api_token
        else None
    )

    @app.before_request
    def guard() -> None:
        # A page on loopback is still reachable from any site the developer visits: a name
        # rebound to 127.0.0.1 could read it (so the Host must be a loopback one), and a
        # cross-site form could post to it (so every POST carries the page's token).
        host = urlsplit(f"//{request.host}").hostname or ""
        if not config.handsets_allow_remote and not is_loopback(host):
            abort(421)
        if request.method == "POST" and not hmac.compare_digest(
            request.form.get("csrf", "").encode(), csrf_token.encode()
        ):
            abort(403)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(_HEADERS)
        return response

    def card_context(msisdn: str) -> dict[str, Any]:
        # A key per rendered form: a double submit creates one conversation, not two.
        return {"phone": msisdn, "entries": timeline(state, msisdn),
                "idempotency_key": uuid.uuid4().hex}

    def page_context(*, with_notices: bool) -> dict[str, Any]:
        notices: dict[str, list[str]] = {}
        # Only the page shows (and so consumes) notices: a poll must not swallow them.
        flashed: list[tuple[str, str]] = (
            get_flashed_messages(with_categories=True) if with_notices else []  # type: ignore[assignment]
        )
        for category, message in flashed:
            notices.setdefault(category, []).append(message)
        return {
            "phones": [card_context(p) for p in state.phones()],
            "virtual_numbers": [n.spec.msisdn for n in state.owned()],
            "notices": notices,
            "csrf": csrf_token,
            "can_create": api is not None,
            "max_text": MAX_TEXT_LENGTH,
            "version": state.version(),
        }

    @app.get("/")
    def root() -> Response:
        return redirect(url_for("page"))  # type: ignore[return-value]

    @app.get("/handsets")
    def page() -> str:
        return render_template("handsets.html", **page_context(with_notices=True))

    @app.get("/handsets/live")
    def live() -> Response:
        """What changed since `since` (204 when nothing did), for the page's polling."""
        version = state.version()
        if request.args.get("since") == str(version):
            return Response(status=204)
        context = page_context(with_notices=False)
        return jsonify({
            "version": version,
            "phones": [
                {
                    "phone": card["phone"],
                    "timeline": render_template("_timeline.html", **card),
                    "card": render_template("_phone.html", **{**context, **card}),
                }
                for card in context["phones"]
            ],
        })

    def back(phone: str | None = None) -> Response:
        anchor = f"phone-{phone}" if phone else None
        return redirect(url_for("page", _anchor=anchor), code=303)  # type: ignore[return-value]

    @app.post("/handsets/phones")
    def add_phone() -> Response:
        number = request.form.get("number", "").strip().removeprefix("+").replace(" ", "")
        if not is_msisdn(number) or lookup(number) is None:
            flash(f"{number or 'that'} is not a valid international number", "page")
            return back()
        if state.owns(number):
            flash(f"{number} is one of the account's virtual numbers, not a phone", "page")
            return back()
        state.add_phone(number)
        return back(number)

    @app.post("/handsets/<phone>/send")
    def send(phone: str) -> Response:
        to = request.form.get("to", "").strip().removeprefix("+")
        text = request.form.get("text", "")
        try:
            check_handset_text(state, phone, to, text)
        except BadRequest as error:
            flash(error.message, phone)
            return back(phone)
        # The same path as the control API: signed inbound webhooks, retried as Vonage does.
        carrier.handset_sends(phone, to, text)
        state.add_phone(phone)
        return back(phone)

    @app.post("/handsets/<phone>/conversations")
    def start_conversation(phone: str) -> Response:
        if api is None:
            flash("no proxy API configured (--proxy-api-url, SANDBOX_PROXY_API_TOKEN)", phone)
            return back(phone)
        other = request.form.get("other", "").strip().removeprefix("+").replace(" ", "")
        if not is_msisdn(phone) or not is_msisdn(other):
            flash("both numbers must be international numbers", phone)
            return back(phone)
        participants = [{"number": f"+{phone}"}, {"number": f"+{other}"}]
        for participant, field in zip(participants, ("name", "other_name"), strict=True):
            if name := request.form.get(field, "").strip():
                participant["display_name"] = name
        ok, detail = api.create_conversation(
            participants, request.form.get("idempotency_key") or uuid.uuid4().hex
        )
        if ok:
            state.add_phone(other)
            flash(f"conversation {detail} with +{other}: the intro texts will arrive", phone)
        else:
            flash(f"the proxy refused the conversation: {detail}", phone)
        return back(phone)

    return app


def timeline(state: State, phone: str) -> list[Entry]:
    """What `phone` received and sent, oldest first."""
    entries = [Entry("in", m.from_, m.text, m.sent_at) for m in state.sent(to=phone)]
    entries += [Entry("out", t.to, t.text, t.sent_at) for t in state.handset_texts(phone)]
    return sorted(entries, key=lambda e: e.at)
