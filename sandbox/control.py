"""The control API under `/_sandbox/`: drive handsets, inspect records, set faults (no auth)."""

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.carrier import Carrier
from sandbox.config import NumberSpec, number_spec
from sandbox.phones import is_msisdn, lookup
from sandbox.sms import MAX_TEXT_LENGTH
from sandbox.state import State, available_to_api

MAX_DUPLICATES = 10


class BadRequest(Exception):
    """Answered as 400 (or `status`) with `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def control_blueprint(state: State, carrier: Carrier) -> Blueprint:
    """Routes for tests, the dev stack and the CLI."""
    blueprint = Blueprint("control", __name__, url_prefix="/_sandbox")

    @blueprint.errorhandler(BadRequest)
    def bad_request(error: BadRequest) -> Response:
        response = jsonify({"error": error.message})
        response.status_code = error.status
        return response

    @blueprint.post("/handsets/<handset>/send")
    def handset_send(handset: str) -> Response:
        body = _json_object()
        to = _field(body, "to", str)
        text = _field(body, "text", str)
        shuffle_parts = _field(body, "shuffle_parts", bool, False)
        duplicates = _field(body, "duplicates", int, 1)
        # a bad request is judged before whether the number is owned (400 before 404)
        if not 1 <= duplicates <= MAX_DUPLICATES:
            raise BadRequest(f"duplicates must be between 1 and {MAX_DUPLICATES}")
        check_handset_text(state, handset, to, text)
        message_ids = carrier.handset_sends(
            handset, to, text, shuffle_parts=shuffle_parts, duplicates=duplicates
        )
        return jsonify({"message_ids": message_ids})

    @blueprint.get("/handsets/<handset>/inbox")
    def inbox(handset: str) -> Response:
        return jsonify([m.to_json() for m in state.sent(to=handset)])

    @blueprint.get("/sms")
    def sms_log() -> Response:
        return jsonify([m.to_json() for m in state.sent()])

    @blueprint.get("/webhooks")
    def webhooks() -> Response:
        return jsonify(state.webhooks())

    @blueprint.get("/numbers")
    def numbers() -> Response:
        # every account's numbers, each naming its account (the Numbers API lists one's own)
        return jsonify([{**n.to_api(), "account": n.account} for n in state.owned()])

    @blueprint.get("/inventory")
    def inventory() -> Response:
        return jsonify([available_to_api(s) for s in state.available()])

    @blueprint.post("/inventory")
    def add_inventory() -> Response:
        specs = [_spec(entry) for entry in _numbers(_json_object())]
        state.add_inventory(specs)
        return jsonify({"added": len(specs)})

    @blueprint.post("/owned")
    def add_owned() -> Response:
        entries = _numbers(_json_object())
        urls = [_field(entry, "moHttpUrl", str, "") for entry in entries]
        accounts = [_field(entry, "account", str, "") for entry in entries]
        specs = [_spec(entry) for entry in entries]
        state.add_owned(specs, urls, accounts)
        return jsonify({"added": len(specs)})

    @blueprint.get("/faults")
    def faults() -> Response:
        return jsonify(state.faults().to_json())

    @blueprint.post("/faults")
    def set_faults() -> Response:
        try:
            return jsonify(state.update_faults(_json_object()).to_json())
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @blueprint.post("/reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"reset": True})

    @blueprint.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @blueprint.get("/stats")
    def stats() -> Response:
        return jsonify(state.stats())

    return blueprint


def check_handset_text(state: State, handset: str, to: str, text: str) -> None:
    """Raise BadRequest unless `handset` may text `to` (an owned number) with `text`."""
    if not is_msisdn(handset) or lookup(handset) is None:
        raise BadRequest(f"{handset} is not a valid international number (digits, no +)")
    if not text or len(text) > MAX_TEXT_LENGTH:
        raise BadRequest(f"text must have 1 to {MAX_TEXT_LENGTH} characters")
    if not state.owns(to):
        raise BadRequest(f"{to} is not a number the account owns", 404)


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


_MISSING = object()


def _field(body: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    value = body.get(name, default)
    if value is _MISSING:
        raise BadRequest(f"{name} is required")
    # bool is an int in Python; a JSON true must not pass as a count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{name} must be a {kind.__name__}")
    return value


def _numbers(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[Any] = _field(body, "numbers", list)
    if not all(isinstance(entry, dict) for entry in entries):
        raise BadRequest("numbers must be a list of objects")
    return [dict(entry) for entry in entries]


def _spec(entry: dict[str, Any]) -> NumberSpec:
    country = _field(entry, "country", str)
    msisdn = _field(entry, "msisdn", str)
    if len(country) != 2 or not country.isalpha() or not is_msisdn(msisdn):
        raise BadRequest(f"bad number {entry!r}: want a 2-letter country and digits, no +")
    spec = number_spec(
        country,
        msisdn,
        _field(entry, "type", str) if "type" in entry else None,
        _field(entry, "cost", str) if "cost" in entry else None,
    )
    if "features" in entry:
        features = _field(entry, "features", list)
        if not all(isinstance(f, str) for f in features):
            raise BadRequest("features must be a list of strings")
        spec = NumberSpec(spec.country, spec.msisdn, spec.type, spec.cost, tuple(features))
    return spec
