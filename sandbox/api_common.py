"""What the Vonage APIs share: parameter parsing, key/secret auth, injected latency and errors."""

import hmac
import time
from http import HTTPStatus

from flask import Blueprint, Response, jsonify, request

from sandbox.config import SandboxAccount, SandboxConfig
from sandbox.state import State


def vonage_params() -> dict[str, str]:
    """Query string, form and JSON body merged into strings, as Vonage reads its parameters."""
    params: dict[str, str] = dict(request.args.items())
    params.update(request.form.items())
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, bool):
                params[str(key)] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                params[str(key)] = str(value)
    return params


def has_credentials(params: dict[str, str]) -> bool:
    """True if the request carries a key and secret at all (header or parameters)."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return True
    return "api_key" in params and "api_secret" in params


def valid_credentials(params: dict[str, str], config: SandboxConfig) -> bool:
    """True for a matching `Authorization: Basic` header or `api_key`/`api_secret` parameters."""
    return authenticated_account(params, config) is not None


def authenticated_account(params: dict[str, str], config: SandboxConfig) -> SandboxAccount | None:
    """The account whose key and secret the request carries (header or parameters), or None."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        key, secret = auth.username or "", auth.password or ""
    else:
        key, secret = params.get("api_key", ""), params.get("api_secret", "")
    found = None
    for account in config.accounts:
        # every account compared, in constant time each, whichever matches
        if same(key, account.api_key) & same(secret, account.api_secret):
            found = account
    return found


def same(given: str, expected: str) -> bool:
    """Constant-time string comparison that also takes non-ASCII input."""
    return hmac.compare_digest(given.encode(), expected.encode())


def http_error(code: int, detail: str = "") -> Response:
    """An HTTP error reply with a small JSON body; 429 and 503 say when to come back."""
    try:
        title = HTTPStatus(code).phrase
    except ValueError:  # codes outside the standard list, such as a scripted 420
        title = "Error"
    response = jsonify({"type": "about:blank", "title": title, "detail": detail})
    response.status_code = code
    if code in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
        response.headers["Retry-After"] = "1"
    return response


def install_faults(blueprint: Blueprint, state: State) -> None:
    """Every request to `blueprint` first waits `latency_ms`, then may fail with `error_rate`."""

    def before() -> Response | None:
        faults = state.faults()
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if state.chance(faults.error_rate):
            return http_error(HTTPStatus.INTERNAL_SERVER_ERROR, "injected fault")
        return None

    blueprint.before_request(before)
