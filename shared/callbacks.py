"""Status callbacks to the marketplace: signed JSON events, POSTed with retries by a task."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import requests

from shared.domain import Conversation
from shared.phone import to_e164
from shared.public_json import conversation_view

SIGNATURE_HEADER = "X-Smsproxy-Signature"
TIMESTAMP_HEADER = "X-Smsproxy-Timestamp"
EVENT_ID_HEADER = "X-Smsproxy-Event-Id"
CALLBACK_TIMEOUT_SECONDS = 5


class CallbackFailed(Exception):
    """The marketplace did not take the event (non-2xx or no answer); retry later."""


@dataclass(frozen=True, slots=True)
class SignedEvent:
    body: bytes
    headers: dict[str, str]


def conversation_event(conversation: Conversation, event: str) -> dict[str, Any]:
    """A status event; its id is stable per conversation and status, so repeats can be dropped."""
    return {
        "id": f"{conversation.id}:{event}",
        "type": f"conversation.{event}",
        "conversation": conversation_view(conversation),
    }


def out_of_session_event(sender: str, virtual_number: str, message_id: str) -> dict[str, Any]:
    """Someone texted a proxy number with no live conversation behind it (no body is shared)."""
    return {
        "id": f"out_of_session:{message_id}",
        "type": "message.out_of_session",
        "from": to_e164(sender),
        "to": to_e164(virtual_number),
        "message_id": message_id,
    }


def sign_event(event: dict[str, Any], secret: str, at: float) -> SignedEvent:
    """The event body and headers; the signature is HMAC-SHA256 over `timestamp.body`."""
    event_id = str(event["id"])
    body = json.dumps(event, separators=(",", ":")).encode()
    timestamp = str(int(at))
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SignedEvent(
        body=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: f"sha256={mac.hexdigest()}",
            TIMESTAMP_HEADER: timestamp,
            EVENT_ID_HEADER: event_id,
        },
    )


def deliver_event(
    session: requests.Session, url: str, event: dict[str, Any], secret: str
) -> None:
    """POST one event; raises CallbackFailed when it should be retried."""
    signed = sign_event(event, secret, time.time())
    try:
        response = session.post(
            url, data=signed.body, headers=signed.headers, timeout=CALLBACK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise CallbackFailed(type(exc).__name__) from exc
    if not 200 <= response.status_code < 300:
        raise CallbackFailed(f"HTTP {response.status_code}")
