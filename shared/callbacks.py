"""Status callbacks to the marketplace: signed JSON events, POSTed with retries by a task."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import certifi

from shared.callback_urls import (
    CallbackPolicy,
    Destination,
    UnsafeDestination,
    check_url,
    resolve,
)
from shared.domain import Conversation
from shared.phone import to_e164
from shared.public_json import conversation_view

SIGNATURE_HEADER = "X-Smsproxy-Signature"
TIMESTAMP_HEADER = "X-Smsproxy-Timestamp"
EVENT_ID_HEADER = "X-Smsproxy-Event-Id"
CALLBACK_TIMEOUT_SECONDS = 5  # the whole delivery: connect, send, answer
# An answer is only judged by its status; what a receiver sends beyond this is not read.
MAX_ANSWER_BYTES = 64 * 1024
_READ_CHUNK = 8192


class CallbackFailed(Exception):
    """The marketplace did not take the event (non-2xx or no answer); retry later."""


class CallbackRefused(Exception):
    """The destination is one the proxy must not send to; drop the event, never retry."""


@dataclass(frozen=True, slots=True)
class SignedEvent:
    body: bytes
    headers: dict[str, str]


def conversation_event(
    conversation: Conversation, event: str, opted_out: tuple[bool, ...]
) -> dict[str, Any]:
    """A status event; its id is stable per conversation and status, so repeats can be dropped."""
    return {
        "id": f"{conversation.id}:{event}",
        "type": f"conversation.{event}",
        "conversation": conversation_view(conversation, opted_out),
    }


def participant_event(
    conversation: Conversation, index: int, event: str, message_id: str,
    opted_out: tuple[bool, ...],
) -> dict[str, Any]:
    """A participant opted out of (or back in to) their proxy number by texting `message_id`
    (`participant.opted_out`, `participant.opted_in`); its id is stable per message."""
    participant = conversation.participants[index]
    return {
        "id": f"{event}:{message_id}",
        "type": event,
        "participant": {
            "number": to_e164(participant.number),
            "proxy_number": to_e164(participant.proxy_number) if participant.proxy_number
            else None,
        },
        "message_id": message_id,
        "conversation": conversation_view(conversation, opted_out),
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


def deliver_event(url: str, event: dict[str, Any], secret: str, policy: CallbackPolicy) -> None:
    """POST one event; raises CallbackFailed when it should be retried, CallbackRefused when
    the destination is not allowed.

    The host is resolved once, every address checked, and the connection made to the checked
    address (TLS still verifies the certificate for the host name, sent as SNI and Host): a
    second lookup cannot send the event elsewhere. No redirect is followed.
    """
    try:
        destination = check_url(url, policy)
        addresses = resolve(destination)
    except UnsafeDestination as exc:
        raise CallbackRefused(str(exc)) from None
    except ConnectionError as exc:
        raise CallbackFailed(str(exc)) from exc
    signed = sign_event(event, secret, time.time())
    connection = _connection(destination, addresses)
    # One deadline for everything, however slowly a receiver trickles its answer: when it
    # passes, the socket is shut down under the blocked read.
    expired = threading.Event()
    watchdog = threading.Timer(CALLBACK_TIMEOUT_SECONDS, _cut, (connection, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            "POST", destination.target, body=signed.body,
            headers={**signed.headers, "Host": destination.host_header},
        )
        response = connection.getresponse()
        _read_bounded(response)
    except (OSError, http.client.HTTPException) as exc:  # ssl and socket errors are OSErrors
        raise CallbackFailed("deadline" if expired.is_set() else type(exc).__name__) from exc
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():  # a cut read looks like the end of the answer
        raise CallbackFailed("deadline")
    if not 200 <= response.status < 300:
        raise CallbackFailed(f"HTTP {response.status}")


def _connect_any(addresses: tuple[str, ...], port: int, timeout: float | None) -> socket.socket:
    """A connection to the first of the checked addresses that answers, as a resolver-based
    connect would, without a lookup of its own."""
    last: OSError = ConnectionError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            last = exc
    raise last


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP (a development setting) to the checked addresses."""

    def __init__(self, addresses: tuple[str, ...], port: int, timeout: float) -> None:
        super().__init__(addresses[0], port, timeout=timeout)
        self._addresses = addresses
        self.held: socket.socket | None = None  # kept after http.client hands it to a response

    def connect(self) -> None:
        self.sock = self.held = _connect_any(self._addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked addresses, verifying the certificate for (and sending as SNI) the
    host name."""

    def __init__(
        self, addresses: tuple[str, ...], port: int, hostname: str, timeout: float
    ) -> None:
        context = ssl.create_default_context(cafile=certifi.where())
        super().__init__(addresses[0], port, timeout=timeout, context=context)
        self._addresses = addresses
        self.held: socket.socket | None = None
        self._context = context
        self._hostname = hostname

    def connect(self) -> None:
        raw = _connect_any(self._addresses, self.port, self.timeout)
        try:
            self.sock = self.held = self._context.wrap_socket(
                raw, server_hostname=self._hostname
            )
        except OSError:
            raw.close()
            raise


_Pinned = _PinnedHTTPConnection | _PinnedHTTPSConnection


def _connection(destination: Destination, addresses: tuple[str, ...]) -> _Pinned:
    if destination.scheme == "https":
        return _PinnedHTTPSConnection(
            addresses, destination.port, destination.host, CALLBACK_TIMEOUT_SECONDS
        )
    return _PinnedHTTPConnection(addresses, destination.port, CALLBACK_TIMEOUT_SECONDS)


def _cut(connection: _Pinned, expired: threading.Event) -> None:
    expired.set()
    sock = connection.held
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _read_bounded(response: http.client.HTTPResponse) -> None:
    """Read at most MAX_ANSWER_BYTES of the answer; the rest is never read (the connection is
    closed after)."""
    read = 0
    while read < MAX_ANSWER_BYTES:
        chunk = response.read1(min(_READ_CHUNK, MAX_ANSWER_BYTES - read))
        if not chunk:
            return
        read += len(chunk)
