"""The machine's RabbitMQ (127.0.0.1:5672, guest/guest) for tests: a private vhost per use.

Each test (or module) gets a vhost of its own, made with `rabbitmqctl` (or, without it, the
management API on 127.0.0.1:15672) and deleted afterwards with everything in it, so no test sees
or touches another's queues (nor other engineers'). Without a reachable RabbitMQ, or with
neither way to make a vhost, the test is skipped and says why.
"""

from __future__ import annotations

import atexit
import base64
import json
import shutil
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HOST, PORT = "127.0.0.1", 5672
USER, PASSWORD = "guest", "guest"
CTL_TIMEOUT_SECONDS = 60


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return True
    except OSError:
        return False


def _ctl(*args: str) -> None:
    subprocess.run(  # noqa: S603 (a fixed tool, our own arguments)
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True,
        timeout=CTL_TIMEOUT_SECONDS,
    )


MANAGEMENT = f"http://{HOST}:15672/api"


def _api(method: str, path: str, body: object = None) -> object:
    """One call of RabbitMQ's management API (the fallback when there is no rabbitmqctl)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{MANAGEMENT}{path}", data=data, method=method)  # noqa: S310
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        raw = response.read()
    return json.loads(raw) if raw else None


def _has_management() -> bool:
    try:
        _api("GET", "/overview")
        return True
    except (OSError, ValueError):
        return False


def _use_ctl() -> bool:
    return shutil.which("rabbitmqctl") is not None


def skip_reason() -> str | None:
    """Why RabbitMQ tests cannot run here, or None when they can."""
    if not _reachable():
        return f"no RabbitMQ reachable on {HOST}:{PORT} (the RabbitMQ runs are skipped)"
    if not _use_ctl() and not _has_management():
        return ("neither rabbitmqctl nor the management API: cannot make a private vhost "
                "(the RabbitMQ runs are skipped)")
    return None


@contextmanager
def private_vhost(label: str = "test") -> Iterator[str]:
    """Yield the AMQP URL of a new vhost of our own; delete it (and all in it) afterwards."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"smsproxy-{label}-{uuid.uuid4().hex[:10]}"
    ctl = _use_ctl()
    try:
        if ctl:
            _ctl("add_vhost", name)
            _ctl("set_permissions", "-p", name, USER, ".*", ".*", ".*")
        else:
            _api("PUT", f"/vhosts/{name}")
            _api("PUT", f"/permissions/{name}/{USER}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"could not make a vhost ({type(exc).__name__}): "
                    "the RabbitMQ runs are skipped")
    try:
        yield f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}/{name}"
    finally:
        if ctl:
            # deleted while the next test runs (rabbitmqctl takes seconds to start); waited
            # for before the test run exits
            _deleting.append(subprocess.Popen(  # noqa: S603 (a fixed tool, our own arguments)
                ["rabbitmqctl", "-q", "delete_vhost", name],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        else:
            _api("DELETE", f"/vhosts/{name}")


_deleting: list[subprocess.Popen[bytes]] = []


@atexit.register
def _wait_for_deletions() -> None:
    for process in _deleting:
        try:
            process.wait(timeout=CTL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()


class TcpProxy:
    """A loopback TCP relay to RabbitMQ that a test can cut (refuse) or freeze (hang).

    The shared RabbitMQ cannot be stopped for one test; what the web sees of an outage is its
    connection refused or a connection that stops answering, and this relay makes both.
    """

    def __init__(self, target: tuple[str, int] = (HOST, PORT)) -> None:
        self._target = target
        self._thawed = threading.Event()
        self._thawed.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self._open()

    def _open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def url(self, vhost_url: str) -> str:
        """`vhost_url` through this relay."""
        return vhost_url.replace(f"{HOST}:{PORT}", f"{HOST}:{self.port}")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._thawed.wait()  # frozen: bytes are held, nothing answers
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones (the port is closed)."""
        if self._listener is not None:
            # shutdown first: close() alone leaves a thread's pending accept() listening
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._open()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def close(self) -> None:
        self.thaw()
        self.cut()


def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def unacknowledged(url: str) -> int:
    """Deliveries handed out and not yet acknowledged, over every queue of the vhost."""
    if not _use_ctl():
        queues = _api("GET", f"/queues/{vhost_of(url)}")
        assert isinstance(queues, list)
        return sum(int(q.get("messages_unacknowledged", 0)) for q in queues)
    out = subprocess.run(  # noqa: S603 (a fixed tool, our own arguments)
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost_of(url), "--no-table-headers",
         "name", "messages_unacknowledged"],
        check=True, capture_output=True, text=True, timeout=CTL_TIMEOUT_SECONDS,
    ).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2)
