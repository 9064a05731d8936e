"""The Numbers API: list owned, search, buy, cancel and update numbers."""

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.api_common import authenticated_account, install_faults, vonage_params
from sandbox.config import NumberSpec, SandboxConfig
from sandbox.state import State, available_to_api

# Vonage's "method failed" status for an operation on a number that is gone or not yours.
METHOD_FAILED = 420
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10


class NumbersError(Exception):
    """A Numbers API failure, answered as HTTP `status` with Vonage's error body."""

    def __init__(self, status: int, label: str) -> None:
        super().__init__(label)
        self.status = status
        self.label = label


def numbers_blueprint(config: SandboxConfig, state: State) -> Blueprint:
    """Routes for the Numbers API."""
    blueprint = Blueprint("numbers", __name__)
    install_faults(blueprint, state)

    @blueprint.errorhandler(NumbersError)
    def failed(error: NumbersError) -> Response:
        response = jsonify({"error-code": str(error.status), "error-code-label": error.label})
        response.status_code = error.status
        return response

    def checked() -> tuple[dict[str, str], str]:
        """The parameters and the API key of the account asking."""
        params = vonage_params()
        account = authenticated_account(params, config)
        if account is None:
            raise NumbersError(HTTPStatus.UNAUTHORIZED, "authentication failed")
        if state.chance(state.faults().throttle_rate):
            raise NumbersError(HTTPStatus.TOO_MANY_REQUESTS, "too many requests")
        return params, account.api_key

    @blueprint.get("/account/numbers")
    def list_owned() -> Response:
        params, account = checked()
        matches = _filter(params)
        owned = [n for n in state.owned(account) if matches(n.spec)]
        return jsonify(_page([n.to_api() for n in owned], params))

    @blueprint.get("/number/search")
    def search() -> Response:
        params, _account = checked()  # one market: every account sees the same numbers
        country = _required(params, "country").upper()
        features = {f for f in params.get("features", "").upper().split(",") if f}
        matches = _filter(params)
        found = [
            spec
            for spec in state.available()
            if spec.country == country
            and params.get("type", spec.type) == spec.type
            and features <= set(spec.features)
            and matches(spec)
        ]
        return jsonify(_page([available_to_api(s) for s in found], params))

    def change(operation: Callable[[str, str, dict[str, str], str], bool]) -> Response:
        params, account = checked()
        country = _required(params, "country").upper()
        if not operation(country, _required(params, "msisdn"), params, account):
            raise NumbersError(METHOD_FAILED, "method failed")
        return jsonify({"error-code": "200", "error-code-label": "success"})

    @blueprint.post("/number/buy")
    def buy() -> Response:
        return change(lambda country, msisdn, _, account: state.buy(country, msisdn, account))

    @blueprint.post("/number/cancel")
    def cancel() -> Response:
        return change(lambda country, msisdn, _, account: state.cancel(country, msisdn, account))

    @blueprint.post("/number/update")
    def update() -> Response:
        return change(
            lambda country, msisdn, params, account: state.update(
                country, msisdn, params.get("moHttpUrl"), account
            )
        )

    return blueprint


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise NumbersError(HTTPStatus.BAD_REQUEST, f"missing parameter: {name}")
    return value


def _filter(params: dict[str, str]) -> Callable[[NumberSpec], bool]:
    """The `country` and `pattern`/`search_pattern` filters (0 starts with, 1 contains, 2 ends)."""
    country = params.get("country", "").upper()
    pattern = params.get("pattern", "")
    tests: dict[str, Callable[[str], bool]] = {
        "0": lambda msisdn: msisdn.startswith(pattern),
        "1": lambda msisdn: pattern in msisdn,
        "2": lambda msisdn: msisdn.endswith(pattern),
    }
    how = tests.get(params.get("search_pattern", "0"))
    if how is None:
        raise NumbersError(HTTPStatus.BAD_REQUEST, "search_pattern must be 0, 1 or 2")
    return lambda spec: (not country or spec.country == country) and how(spec.msisdn)


def _page(entries: Sequence[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
    """`count` is the total (an int); `numbers` holds the page and is absent when empty."""
    index = _int_param(params, "index", 1, 1, 1_000_000)
    size = _int_param(params, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = list(entries[(index - 1) * size : index * size])
    reply: dict[str, Any] = {"count": len(entries)}
    if page:
        reply["numbers"] = page
    return reply


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isdigit() and raw.isascii() and low <= int(raw) <= high):
        raise NumbersError(HTTPStatus.BAD_REQUEST, f"{name} must be between {low} and {high}")
    return int(raw)
