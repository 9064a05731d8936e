"""Status callbacks to the marketplace: signed JSON events, POSTed with retries by a task."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import requests

from shared.domain import Conversation
from shared.views import conversation_view

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


def sign_event(conversation: Conversation, event: str, secret: str, at: float) -> SignedEvent:
    """The event body and headers; the signature is HMAC-SHA256 over `timestamp.body`.

    The event id is stable per conversation and status, so a receiver can drop repeats.
    """
    event_id = f"{conversation.id}:{event}"
    body = json.dumps(
        {"id": event_id, "type": f"conversation.{event}",
         "conversation": conversation_view(conversation)},
        separators=(",", ":"),
    ).encode()
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
    session: requests.Session, url: str, conversation: Conversation, event: str, secret: str
) -> None:
    """POST one event; raises CallbackFailed when it should be retried."""
    signed = sign_event(conversation, event, secret, time.time())
    try:
        response = session.post(
            url, data=signed.body, headers=signed.headers, timeout=CALLBACK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise CallbackFailed(type(exc).__name__) from exc
    if not 200 <= response.status_code < 300:
        raise CallbackFailed(f"HTTP {response.status_code}")
