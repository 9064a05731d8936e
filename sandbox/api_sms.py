"""The SMS API: `POST /sms/json`."""

import re
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.api_common import (
    authenticated_account,
    has_credentials,
    http_error,
    install_faults,
    same,
    vonage_params,
)
from sandbox.carrier import Carrier, tariff
from sandbox.config import SandboxAccount, SandboxConfig
from sandbox.phones import is_msisdn
from sandbox.signing import verify
from sandbox.sms import MAX_TEXT_LENGTH, encoding_for, split
from sandbox.state import SentMessage, State, utc_now_iso

# Vonage's error texts for the status codes it documents.
ERROR_TEXTS: dict[int, str] = {
    1: "Throttled",
    2: "Missing Parameters",
    3: "Invalid Parameters",
    4: "Bad Credentials",
    5: "Internal Error",
    6: "Invalid Message",
    7: "Number Barred",
    8: "Partner Account Barred",
    9: "Partner Quota Violation",
    10: "Too Many Existing Binds",
    11: "Account Not Enabled For HTTP",
    12: "Message Too Long",
    14: "Invalid Signature",
    15: "Illegal Sender Address - rejected",
    22: "Invalid Network Code",
    23: "Invalid Callback Url",
    29: "Non-Whitelisted Destination",
    32: "Signature And API Secret Disallowed",
    33: "Number De-activated",
}

_ALPHANUMERIC_SENDER = re.compile(r"^[A-Za-z0-9]{1,11}$")
_CALLBACK = re.compile(r"^https?://[^\s]+$")
_BOOLEANS = {"true", "false", "1", "0"}


class Rejection(Exception):
    """A send refused with a Vonage status code."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.text = f"{ERROR_TEXTS.get(status, 'Error')}{' - ' + detail if detail else ''}"


def sms_blueprint(config: SandboxConfig, state: State, carrier: Carrier) -> Blueprint:
    """Routes for the SMS API."""
    blueprint = Blueprint("sms", __name__)
    install_faults(blueprint, state)

    @blueprint.post("/sms/json")
    def send() -> Response:
        params = vonage_params()
        try:
            forced = state.next_scripted_outcome()
            if forced is not None and forced.startswith("http"):
                return http_error(int(forced.removeprefix("http")), "scripted fault")
            if forced is not None and forced != "0":
                raise Rejection(int(forced))
            account = _authenticate(params, config)
            # Vonage counts every request of a key against its limit, valid or not.
            if not state.take_send_slot(account.api_key, config.rate_per_key):
                raise Rejection(1)
            _validate(params, config, state, account)
            if state.chance(state.faults().throttle_rate):
                raise Rejection(1)
        except Rejection as rejection:
            state.record_rejected()
            return jsonify(
                {
                    "message-count": "1",
                    "messages": [{"status": str(rejection.status), "error-text": rejection.text}],
                }
            )
        return jsonify(_accept(params, config, state, carrier, account))

    return blueprint


def _authenticate(params: dict[str, str], config: SandboxConfig) -> SandboxAccount:
    """The account sending: by key and secret, or by key and a signature over the request."""
    if "sig" in params:
        # Signed requests replace the secret with a signature over all parameters.
        if "api_secret" in params:
            raise Rejection(32)
        signer = config.account(params.get("api_key", ""))
        secret = signer.signature_secret if signer else None
        if not (
            signer
            and secret
            and same(params.get("api_key", ""), signer.api_key)
            and verify(params, secret, config.signature_method)
        ):
            raise Rejection(14)
        return signer
    if not has_credentials(params):
        raise Rejection(2, "api_key and api_secret are required")
    account = authenticated_account(params, config)
    if account is None:
        raise Rejection(4)
    return account


def _validate(
    params: dict[str, str], config: SandboxConfig, state: State, account: SandboxAccount
) -> None:
    for name in ("from", "to"):
        if not params.get(name):
            raise Rejection(2, f"{name} is required")
    if params.get("type", "text") == "binary":
        raise Rejection(3, "binary messages are not supported by the sandbox")
    if params.get("type", "text") not in ("text", "unicode"):
        raise Rejection(3, "type must be text, unicode or binary")
    if not params.get("text"):
        raise Rejection(2, "text is required")
    if not is_msisdn(params["to"]):
        raise Rejection(3, "to must be an international number: digits, no + or 00")
    sender = _sender(params["from"])
    if not (is_msisdn(sender) or _ALPHANUMERIC_SENDER.match(sender)):
        raise Rejection(3, "from must be a number or up to 11 letters and digits")
    if len(params["text"]) > MAX_TEXT_LENGTH:
        raise Rejection(12)
    if len(params.get("client-ref", "")) > 100:
        raise Rejection(3, "client-ref is limited to 100 characters")
    callback = params.get("callback")
    if callback is not None and (len(callback) > 100 or not _CALLBACK.match(callback)):
        raise Rejection(23)
    ttl = params.get("ttl")
    if ttl is not None and not (
        ttl.isascii() and ttl.isdigit() and 20_000 <= int(ttl) <= 604_800_000
    ):
        raise Rejection(3, "ttl must be between 20000 and 604800000 ms")
    if params.get("status-report-req", "true").lower() not in _BOOLEANS:
        raise Rejection(3, "status-report-req must be true or false")
    if config.strict_sender and not state.owns(sender, account.api_key):
        # a number of another account is not this account's to send from
        raise Rejection(15, f"{sender} is not a number this account owns")


def _accept(
    params: dict[str, str],
    config: SandboxConfig,
    state: State,
    carrier: Carrier,
    account: SandboxAccount,
) -> dict[str, Any]:
    text = params["text"]
    encoding = encoding_for(text, params.get("type"))
    parts = split(text, encoding)
    network, price = tariff(params["to"])
    client_ref = params.get("client-ref")
    message = SentMessage(
        from_=_sender(params["from"]),
        to=params["to"],
        text=text,
        type=str(encoding),
        client_ref=client_ref,
        callback=params.get("callback"),
        message_ids=tuple(state.new_message_id() for _ in parts),
        parts=tuple(parts),
        sent_at=utc_now_iso(),
        account=account.api_key,
    )
    balance_after = state.record_sent(message, price * len(parts))
    balance = balance_after + price * len(parts)
    replies: list[dict[str, str]] = []
    for message_id in message.message_ids:
        balance -= price
        reply = {
            "to": message.to,
            "message-id": message_id,
            "status": "0",
            "remaining-balance": _money(balance),
            "message-price": _money(price),
            "network": network,
        }
        if client_ref is not None:
            reply["client-ref"] = client_ref
        replies.append(reply)
    receipt_url = message.callback or config.dlr_url
    if receipt_url and params.get("status-report-req", "true").lower() in ("true", "1"):
        carrier.send_receipts(message, receipt_url, network, price)
    return {"message-count": str(len(replies)), "messages": replies}


def _sender(given: str) -> str:
    """The sender id as sent: Vonage ignores the spaces of an alphanumeric one."""
    return given if is_msisdn(given) else given.replace(" ", "")


def _money(amount: Decimal) -> str:
    return f"{amount:.8f}"
