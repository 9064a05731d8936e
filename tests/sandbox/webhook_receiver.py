"""A plain-HTTP webhook endpoint for the sandbox's tests (a module, so tests can import it)."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest


@dataclass(frozen=True)
class Received:
    """One request the receiver got, its parameters decoded whatever the format."""

    method: str
    path: str
    content_type: str
    params: dict[str, str]


class Receiver:
    """A plain-HTTP webhook endpoint on 127.0.0.1 that records requests.

    It answers the statuses queued in `answers` first, then 200.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                receiver._record(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                receiver._record(self, self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (which waits for one poll) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """The inbound-SMS URL to configure on a number."""
        return f"{self.base_url}/webhooks/inbound-sms"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until `count` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"receiver got {len(self.received)} requests, wanted {count}")
                self._changed.wait(left)
            return list(self.received)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        content_type = handler.headers.get("Content-Type", "")
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        if content_type.startswith("application/json"):
            params.update(json.loads(body))
        elif body:
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        with self._changed:
            status = self.answers.pop(0) if self.answers else 200
            self.received.append(Received(handler.command, split.path, content_type, params))
            self._changed.notify_all()
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
