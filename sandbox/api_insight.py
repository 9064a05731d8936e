"""Number Insight basic: `GET /ni/basic/json`."""

import re
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.api_common import install_faults, valid_credentials, vonage_params
from sandbox.config import SandboxConfig
from sandbox.phones import lookup
from sandbox.state import State

# Vonage's definition lets `number` carry spaces, dashes and brackets ("+1 (201) 555-0123").
_NUMBER = re.compile(r"[0-9\-+()\s]*")
_PUNCTUATION = re.compile(r"[\-()\s]")


def insight_blueprint(config: SandboxConfig, state: State) -> Blueprint:
    """Routes for Number Insight (basic level only)."""
    blueprint = Blueprint("insight", __name__)
    install_faults(blueprint, state)

    @blueprint.get("/ni/basic/json")
    def basic() -> Response:
        params = vonage_params()
        return jsonify(_basic(params, config, state))

    return blueprint


def _basic(params: dict[str, str], config: SandboxConfig, state: State) -> dict[str, Any]:
    # Like the other legacy APIs, Number Insight answers HTTP 200 and puts the outcome in `status`
    # (an int here, unlike the SMS API's strings).
    request_id = str(uuid.uuid4())
    state.record_insight_lookup()
    if not valid_credentials(params, config):
        return _failure(4, "Invalid credentials", request_id)
    if state.chance(state.faults().throttle_rate):
        return _failure(1, "Busy", request_id)
    number = params.get("number", "")
    if not number:
        return _failure(3, "Invalid request :: number is missing", request_id)
    readable = _NUMBER.fullmatch(number)
    info = lookup(_PUNCTUATION.sub("", number), params.get("country")) if readable else None
    if info is None:
        return _failure(
            3, f"Invalid request :: Not valid number format detected [ {number} ]", request_id
        )
    return {
        "status": 0,
        "status_message": "Success",
        "request_id": request_id,
        "international_format_number": info.msisdn,
        "national_format_number": info.national_format,
        "country_code": info.region,
        "country_code_iso3": info.alpha3,
        "country_name": info.country_name,
        "country_prefix": info.country_prefix,
    }


def _failure(status: int, message: str, request_id: str) -> dict[str, Any]:
    return {"status": status, "status_message": message, "request_id": request_id}
