"""The whole system as real processes on loopback: Redis, the sandbox, web, worker(s), beat.

Used by `make run` (devtools.devstack), the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devtools.ports import free_port, port_is_free
from devtools.redis_sentinel import SentinelCluster
from devtools.redis_server import RedisServer
from sandbox.testing import SandboxProcess, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
# The dev stack's one /v1 client ("dev"); a development token, not a secret.
API_TOKEN = "dev-token-not-a-secret-0123456789abcdef"
# The dev stack's console key: a development value, not a secret (production sets its own).
CONSOLE_SECRET_KEY = "dev-console-key-not-a-secret-0123456789abcdef"


def worker_command(hostname: str, *extra: str) -> list[str]:
    """The Procfile's worker, as this interpreter runs it (tests/test_deployment_files.py keeps
    the two equal): a stack tests what production runs."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "--loglevel", "INFO", "--without-mingle", "--hostname", hostname, *extra]


@dataclass
class StackConfig:
    """How to run the stack; defaults suit the dev stack and the end-to-end tests."""

    state_dir: Path
    web_port: int | None = None
    redis_port: int | None = None
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    signature_secret: str | None = "dev-signature-secret"
    signature_method: str = "sha256"
    pool_targets: str = "GB=3,US=2"
    workers: int = 1
    worker_args: tuple[str, ...] = ()
    beat: bool = False
    # the sandbox's handsets page, starting conversations through this stack's API
    handsets: bool = False
    phones: tuple[str, ...] = ()
    # Vonage accounts besides the sandbox's own, as (key, secret, signature secret): the
    # sandbox serves them and the proxy is given every account in SMSPROXY_VONAGE_ACCOUNTS.
    extra_accounts: tuple[tuple[str, str, str], ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # a Sentinel-managed Redis (master, replica, three sentinels) instead of one redis-server
    sentinel: bool = False

    @property
    def accounts_setting(self) -> str:
        """SMSPROXY_VONAGE_ACCOUNTS for the sandbox's own account and the extra ones."""
        primary = ("sandbox-key", "sandbox-secret", self.signature_secret or "")
        return ",".join(":".join(account) for account in (primary, *self.extra_accounts))


class Stack:
    """Starts every process, waits until each is ready, and stops them all on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.logs = config.state_dir / "logs"
        self._exit = ExitStack()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: RedisServer | None = None
        self.sentinel: SentinelCluster | None = None
        self.sandbox: SandboxProcess | None = None
        self.web_port = config.web_port if config.web_port and port_is_free(config.web_port) \
            else free_port()
        self.env: dict[str, str] = {}
        self._sandbox_host = ""  # 127.0.0.1:<port>, chosen as the stack starts
        self._sandbox_ca = ""  # the path of the sandbox's CA certificate
        # where each process's log stood when it was (re)started: a restarted process appends
        # to the same log, and only what it wrote counts for its readiness
        self._log_offsets: dict[str, int] = {}

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        redis_port = self.config.redis_port
        if redis_port is not None and not port_is_free(redis_port):
            redis_port = None
        if self.config.sentinel:
            self.sentinel = SentinelCluster(self.config.state_dir / "redis")
            self._exit.callback(self.sentinel.stop)
            self.sentinel.start()
            self.redis = self.sentinel.master  # the first master; after a failover, the replica
        else:
            self.redis = RedisServer(self.config.state_dir / "redis", redis_port)
            self.redis.start()
            self._exit.callback(self.redis.stop)

        options: dict[str, Any] = {"retry_base_seconds": 0.5, **self.config.sandbox_options}
        if self.config.signature_secret:
            options.setdefault("signature_secret", self.config.signature_secret)
            options.setdefault("signature_method", self.config.signature_method)
        sandbox_env: dict[str, str] = {}
        if self.config.handsets:
            options.setdefault("handsets_port", 0)
            options.setdefault("phones", ",".join(self.config.phones))
            # web is not up yet, but its port is chosen: the page needs it only when used
            options.setdefault("proxy_api_url", self.web_url)
            # the token by environment, never on the sandbox's command line
            sandbox_env["SANDBOX_PROXY_API_TOKEN"] = API_TOKEN
        if self.config.extra_accounts:
            # by environment: the sandbox's command line would show the secrets to every user
            sandbox_env["SANDBOX_ACCOUNTS"] = ",".join(
                ":".join(account) for account in self.config.extra_accounts)
        # The sandbox starts alongside the workers, not before them: its port is chosen here
        # and its CA's path is known, and a worker calls Vonage only when a task asks it to
        # (the CA file is read per call). Web and beat start once it is up: a subclass's
        # start_web may use `self.sandbox` (bench/scale_out.py), and beat asks for pool
        # maintenance as it starts.
        sandbox_port = int(str(options.pop("port", 0))) or free_port()
        while sandbox_port in (self.web_port, self.redis.port):
            sandbox_port = free_port()
        starting = start_sandbox(self.config.state_dir / "sandbox", env=sandbox_env,
                                 port=sandbox_port, **options)
        self._exit.callback(starting.stop)
        self._sandbox_host, self._sandbox_ca = f"127.0.0.1:{sandbox_port}", starting.ca_path
        self.env = self._proxy_env()
        for index in range(self.config.workers):
            self.start_worker(f"worker{index + 1}")
        self.sandbox = starting.wait()
        self._exit.callback(self.sandbox.client.close)
        self.start_web()
        if self.config.beat:
            self.start_beat()
        self.wait_ready()

    def _proxy_env(self) -> dict[str, str]:
        assert self.redis is not None
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VONAGE_", "SMSPROXY_", "CELERY_", "REDIS_URL"))}
        env.update(
            {
                "REDIS_URL": self.sentinel.url if self.sentinel else self.redis.url,
                "VONAGE_API_KEY": "sandbox-key",
                "VONAGE_API_SECRET": "sandbox-secret",
                "VONAGE_API_HOST": self._sandbox_host,
                "VONAGE_REST_HOST": self._sandbox_host,
                "VONAGE_CA_BUNDLE": self._sandbox_ca,
                "PUBLIC_BASE_URL": self.web_url,
                "SMSPROXY_API_TOKENS": f"dev:{API_TOKEN}",
                "SMSPROXY_POOL_TARGETS": self.config.pool_targets,
                # the marketplace receivers of the dev stack and its tests are local, plain http
                "SMSPROXY_ALLOW_HTTP_CALLBACKS": "true",
                "SMSPROXY_CALLBACK_ALLOWED_HOSTS": "127.0.0.1,localhost",
                # the console, its one client an operator, its cookie over the stack's plain http
                "SMSPROXY_CONSOLE_SECRET_KEY": CONSOLE_SECRET_KEY,
                "SMSPROXY_OPERATORS": "dev",
                "SMSPROXY_CONSOLE_SECURE_COOKIE": "false",
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.config.signature_secret:
            env["VONAGE_SIGNATURE_SECRET"] = self.config.signature_secret
            env["VONAGE_SIGNATURE_METHOD"] = self.config.signature_method
        else:  # a stack asked to run unsigned says so, or web refuses to start
            env["SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS"] = "true"
        if self.config.extra_accounts:
            # one source of credentials: the list replaces the single account's variables
            for name in ("VONAGE_API_KEY", "VONAGE_API_SECRET", "VONAGE_SIGNATURE_SECRET"):
                env.pop(name, None)
            env["SMSPROXY_VONAGE_ACCOUNTS"] = self.config.accounts_setting
        env.update(self.config.extra_env)
        return env

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            self._log_offsets[name] = log.tell()
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and entry points)
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_web(self) -> None:
        self._spawn("web", [
            sys.executable, "-m", "gunicorn", "web.wsgi:app", "--config",
            str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{self.web_port}",
        ])

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, worker_command(f"{name}@%h", *self.config.worker_args))

    def start_beat(self, name: str = "beat") -> None:
        self._spawn(name, [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
            "--loglevel", "INFO", "--schedule", str(self.config.state_dir / f"{name}-schedule"),
        ])

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._web_ready() and all(
                self.worker_ready(name) for name in self.processes if name.startswith("worker")
            ):
                return
            time.sleep(0.05)  # a poll is a local GET and a log read; every stack start waits here
        raise TimeoutError(f"stack not ready after {timeout} s; logs in {self.logs}")

    def worker_ready(self, name: str) -> bool:
        """Whether the worker `name` has said it is ready since it was last started."""
        with open(self.logs / f"{name}.log", "rb") as log:
            log.seek(self._log_offsets.get(name, 0))
            return b" ready." in log.read()

    def _web_ready(self) -> bool:
        # /readyz answers only the metrics token's bearer when the stack runs with one
        token = self.env.get("SMSPROXY_METRICS_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return requests.get(
                f"{self.web_url}/readyz", headers=headers, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        self._stop_all([name], sig, timeout)

    def _stop_all(self, names: list[str], sig: int, timeout: float) -> None:
        """Signal every named process at once, then wait for each (SIGKILL after `timeout`):
        their shutdowns overlap, so stopping a stack takes its slowest process's shutdown,
        not the sum of them all (gunicorn's and each Celery worker's take about a second)."""
        stopping = [p for p in (self.processes.pop(name, None) for name in names)
                    if p is not None and p.poll() is None]
        for process in stopping:
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + timeout
        for process in stopping:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    @property
    def worker_names(self) -> list[str]:
        """The workers started and not stopped (through this object), in start order."""
        return [name for name in self.processes if name.startswith("worker")]

    def stop_workers(self, sig: int = signal.SIGTERM, timeout: float = 30) -> list[str]:
        """Signal every worker at once (SIGTERM: warm shutdown), wait for each to exit
        (SIGKILL after `timeout`), and return their names, e.g. to start them again."""
        names = self.worker_names
        self._stop_all(names, sig, timeout)
        return names

    def start_workers(self, names: list[str], timeout: float = 60.0) -> None:
        """Start workers under the given names and wait until each is ready."""
        for name in names:
            self.start_worker(name)
        self.wait_ready(timeout)

    def restart_redis(self, downtime: float = 0.0, timeout: float = 10.0) -> None:
        """Stop Redis (SIGTERM: it flushes its append-only file), stay down `downtime`
        seconds, and start it again on the same port and data directory."""
        assert self.redis is not None
        self.redis.stop()
        time.sleep(downtime)
        self.redis.start(timeout)

    def stop(self) -> None:
        if self.sandbox is not None and self.sandbox.process.poll() is None:
            # The sandbox first, as Vonage going away: its kept-alive webhook connections to
            # web would otherwise hold gunicorn's graceful shutdown for seconds (its workers
            # keep idle connections open a while after SIGTERM; measured 3 to 10 s a stack).
            self.sandbox.process.terminate()
        self._stop_all(list(self.processes), signal.SIGTERM, 20)
        self._exit.close()

    # -- talking to it -----------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, f"{self.web_url}{path}", json=body, timeout=10,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )

    def provision_pool(self, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Run pool maintenance now (beat would within a minute) and wait for the numbers."""
        from shared.jobs import TaskName
        from shared.settings import Settings
        from web.queue import Publisher

        Publisher(Settings.from_env(self.env)).publish(TaskName.MAINTAIN_POOL, None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            numbers: list[dict[str, Any]] = self.api("GET", "/v1/numbers").json()["numbers"]
            if len(numbers) >= expected:
                return numbers
            self._check_alive()
            time.sleep(0.2)
        raise TimeoutError(f"pool not provisioned in {timeout} s; logs in {self.logs}")

    def wait_for_trail(
        self, conversation_id: str, states: set[str], count: int, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Wait until `count` outbound messages of a conversation's trail are in `states`."""
        deadline = time.monotonic() + timeout
        while True:
            trail: list[dict[str, Any]] = self.api(
                "GET", f"/v1/conversations/{conversation_id}/messages"
            ).json()["messages"]
            if sum(1 for m in trail if m.get("status") in states) >= count:
                return trail
            if time.monotonic() > deadline:
                raise TimeoutError(f"conversation {conversation_id}'s trail: {trail}")
            self._check_alive()
            time.sleep(0.1)

    def wait_for_status(
        self, conversation_id: str, status: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.api("GET", f"/v1/conversations/{conversation_id}").json()
            if body["status"] == status:
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"conversation {conversation_id} is {body['status']}")
            self._check_alive()
            time.sleep(0.1)
