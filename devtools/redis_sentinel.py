"""A Sentinel-managed Redis on loopback: a master, a replica and three sentinels, real processes.

For the failover tests: the replica follows the master through a relay the test can hold, so
that the replica falls behind on purpose (on loopback replication is otherwise too quick for
a crash to catch a write in flight), and the master can be killed to make the sentinels
promote the replica. Works with whichever redis-server devtools/redis_server.py finds; a binary
without sentinel mode is reported as such (`SentinelUnavailable`), for the tests to skip.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import redis

from devtools.ports import free_port
from devtools.redis_server import RedisServer, redis_server_binary

MASTER_NAME = "smsproxy"
SENTINELS = 3
QUORUM = 2
# Quick failover for tests: the master is judged down after 1 s without an answer.
DOWN_AFTER_MS = 1000
# Also how long a sentinel waits before it "fixes" a replica that follows another address than
# the master's: this replica follows the relay's port, so the wait must outlast a test, or the
# sentinels would point it at the master directly and the relay would hold nothing.
FAILOVER_TIMEOUT_MS = 180000


class SentinelUnavailable(RuntimeError):
    """The redis-server binary cannot run as a sentinel."""


class ReplicationRelay:
    """A TCP relay between the replica and the master; `hold` stops it forwarding (the replica
    then lags, as over a slow or partitioned link), `cut` drops what it held and every
    connection (the master died with those writes)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Close everything; bytes held are never delivered."""
        self._closed.set()
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                with suppress(OSError):
                    sock.close()
            self._sockets.clear()
        self._flowing.set()  # wake the pumps, which see `_closed` and stop

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                return
            with self._lock:
                self._sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            # while held, this chunk waits here and later ones stay in the kernel's buffer
            self._flowing.wait()
            if not data or self._closed.is_set():
                for sock in (source, sink):
                    with suppress(OSError):
                        sock.close()
                return
            try:
                sink.sendall(data)
            except OSError:
                return


class SentinelCluster:
    """Master, replica (through a relay) and sentinels; `url` is the proxy's redis+sentinel URL."""

    def __init__(self, state_dir: Path, master_name: str = MASTER_NAME) -> None:
        self.state_dir = state_dir
        self.master_name = master_name
        self.master = RedisServer(state_dir / "master")
        self.relay: ReplicationRelay | None = None
        self.replica: RedisServer | None = None
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        self._sentinels: list[subprocess.Popen[bytes]] = []
        self._exit = ExitStack()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        deadline = time.monotonic() + timeout
        self.master.start()
        self._exit.callback(self.master.stop)
        self.relay = ReplicationRelay(self.master.port)
        self._exit.callback(self.relay.cut)
        self.replica = RedisServer(
            self.state_dir / "replica",
            extra_args=("--replicaof", "127.0.0.1", str(self.relay.port)),
        )
        self.replica.start()
        self._exit.callback(self.replica.stop)
        self._wait(lambda: _info(self.replica_port, "replication").get("master_link_status")
                   == "up", deadline, "the replica never synced")
        for index, port in enumerate(self.sentinel_ports):
            self._start_sentinel(index, port)
        # each sentinel knows the replica and the two others: a failover can then be agreed
        self._wait(self._sentinels_agree, deadline, "the sentinels never found each other")
        return self

    def stop(self) -> None:
        self._exit.close()

    def __enter__(self) -> SentinelCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def replica_port(self) -> int:
        assert self.replica is not None
        return self.replica.port

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
                found = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                client.close()
            except redis.RedisError:
                continue
            if found:
                return int(found[1])
        return None

    def kill_master(self) -> None:
        """SIGKILL the master; what the relay held dies with it."""
        if self.relay is not None:
            self.relay.cut()
        self.master.kill()

    def wait_for_promotion(self, timeout: float = 30.0) -> float:
        """Until the sentinels name the replica and it answers as master; seconds taken."""
        started = time.monotonic()
        self._wait(lambda: self.master_port() == self.replica_port
                   and _info(self.replica_port, "replication").get("role") == "master",
                   started + timeout, "the replica was not promoted")
        return time.monotonic() - started

    def rejoin_old_master(self, timeout: float = 30.0) -> float:
        """Start the killed master again (its port, its append-only file), as a host coming
        back does; the sentinels turn it into a replica of the promoted one. Until then the
        new master has no replica, and a WAIT for one answers 0. Seconds until it is synced."""
        started = time.monotonic()
        self.master.start()
        self._wait(lambda: _info(self.master.port, "replication").get("master_link_status")
                   == "up", started + timeout, "the old master never rejoined as a replica")
        return time.monotonic() - started

    def _start_sentinel(self, index: int, port: int) -> None:
        directory = self.state_dir / f"sentinel{index + 1}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # a sentinel rewrites its file: one each
        config.write_text("\n".join([
            "bind 127.0.0.1",
            f"port {port}",
            f"dir {directory}",
            f"logfile {directory / 'sentinel.log'}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} {QUORUM}",
            f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.master_name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {self.master_name} 1",
            "",
        ]))
        process = subprocess.Popen(  # noqa: S603
            [redis_server_binary(), str(config), "--sentinel"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._sentinels.append(process)
        self._exit.callback(_stop, process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise SentinelUnavailable(
                    f"{redis_server_binary()} did not run as a sentinel: {error.strip()[:200]}")
            try:
                if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SentinelUnavailable(f"the sentinel on port {port} never answered")

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
            try:
                replicas = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "REPLICAS", self.master_name)
                others = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "SENTINELS", self.master_name)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if len(replicas) < 1 or len(others) < SENTINELS - 1:
                return False
        return True

    @staticmethod
    def _wait(check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(what)


def _info(port: int, section: str) -> dict[str, object]:
    client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
    try:
        return dict(client.info(section))
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
