"""The sandbox's webhook sender keeps its connection to a receiver between attempts."""

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from sandbox import delivery
from sandbox.delivery import _Sender
from tests.e2e.http_server import serving


class KeepAliveReceiver:
    """An HTTP/1.1 receiver that records the client port of each request it gets.

    With `drop_second` set, it closes the connection, unanswered, on the second request that
    arrives over one connection: a kept-alive connection lost while a request is on its way.
    """

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.drop_second = False
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.requests_here = 0

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.requests_here += 1
                receiver.ports.append(self.client_address[1])
                if receiver.drop_second and self.requests_here == 2:
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


@pytest.fixture
def receiver() -> Iterator[KeepAliveReceiver]:
    r = KeepAliveReceiver()
    with serving(r.handler()) as base_url:
        r.url = f"{base_url}/webhooks/delivery-receipt"
        yield r


@pytest.fixture
def sender() -> Iterator[_Sender]:
    s = _Sender()
    yield s
    s.close()


def test_attempts_reuse_one_connection(receiver: KeepAliveReceiver, sender: _Sender) -> None:
    results = [sender.send(receiver.url, "post", {"n": str(n)}) for n in range(3)]

    assert results == [(200, None)] * 3
    assert len(receiver.ports) == 3 and len(set(receiver.ports)) == 1


def test_a_reused_connection_lost_is_a_failed_attempt_and_the_next_one_reconnects(
    receiver: KeepAliveReceiver, sender: _Sender
) -> None:
    receiver.drop_second = True

    first = sender.send(receiver.url, "json", {"n": "1"})
    lost = sender.send(receiver.url, "json", {"n": "2"})
    retried = sender.send(receiver.url, "json", {"n": "2"})

    assert first == (200, None)
    status_code, error = lost
    assert status_code is None and error is not None and "ConnectionError" in error
    assert retried == (200, None)
    # The retry went over a new connection, not the one lost.
    assert receiver.ports[2] != receiver.ports[0]


def test_a_connection_idle_too_long_is_not_reused(
    receiver: KeepAliveReceiver, sender: _Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "IDLE_REUSE_SECONDS", -1.0)  # every connection is "too old"

    sender.send(receiver.url, "post", {"n": "1"})
    sender.send(receiver.url, "post", {"n": "2"})

    assert len(set(receiver.ports)) == 2
