"""Run the sandbox as a real subprocess for a test or a script: `with run_sandbox(tmp) as sb:`."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.client import SandboxClient
from sandbox.tls import CA_CERT_NAME

# The directory holding the `sandbox` package, so the child can import it from any cwd.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SandboxProcess:
    """A running sandbox: where it listens, the CA to trust, and a control client."""

    process: subprocess.Popen[bytes]
    port: int
    url: str
    ca_path: str
    log_path: Path
    client: SandboxClient
    handsets_url: str | None = None  # the handsets page's origin, when `handsets_port` was given

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, the form the vonage SDK's `api_host` and `rest_host` take."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the sandbox wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def sandbox_args(options: dict[str, object]) -> list[str]:
    """CLI flags for keyword options: `retry_base_seconds=0.1` -> `--retry-base-seconds 0.1`.

    A bool is a switch: True adds `--name`, False adds `--no-name` (e.g. `strict_sender=False`).
    """
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


@dataclass
class StartingSandbox:
    """A sandbox process started and not yet known to be ready (`start_sandbox`): its port when
    one was asked for, and where its CA's certificate will be, both known before it is up."""

    process: subprocess.Popen[bytes]
    port: int  # 0 when the sandbox was left to choose one
    ca_path: str
    ready_file: Path
    log_path: Path

    def wait(self, timeout: float = 20.0) -> SandboxProcess:
        """Wait until the sandbox listens; raise if it exits first or takes over `timeout`."""
        ready = _wait_ready(self.process, self.ready_file, self.log_path, timeout)
        if self.port and int(ready["port"]) != self.port or ready["ca"] != self.ca_path:
            raise RuntimeError(f"sandbox ready on {ready}, not port {self.port} and CA "
                               f"{self.ca_path}:\n" + self.log_path.read_text(errors="replace"))
        client = SandboxClient(ready["url"], ready["ca"])
        return SandboxProcess(
            self.process, int(ready["port"]), ready["url"], ready["ca"], self.log_path, client,
            ready.get("handsets_url"),
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; harmless when it has exited."""
        _stop(self.process)


def start_sandbox(
    tmp_dir: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    **options: object,
) -> StartingSandbox:
    """Start `python -m sandbox serve` and return at once, without waiting until it listens:
    a caller that knows the port (`port`, 0 for any) and the CA's path can start its own
    processes meanwhile. `options` and `env` are as for `run_sandbox`."""
    tmp = Path(tmp_dir).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    ready_file = tmp / "sandbox-ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = tmp / "sandbox.log"
    options = {"state_dir": tmp / "sandbox-state", **options}
    command = [sys.executable, "-m", "sandbox", "serve", "--port", str(port)]
    command += ["--ready-file", str(ready_file), *sandbox_args(options)]
    # SANDBOX_* settings of the developer's shell must not leak into a test's sandbox.
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    child_env.update(env or {})
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_PROJECT_ROOT), child_env.get("PYTHONPATH")])
    )
    # where sandbox.tls.load_or_create_ca puts it (the child runs in our working directory)
    ca_path = str((Path(str(options["state_dir"])) / CA_CERT_NAME).resolve())
    # The log goes to a file, not a pipe: an unread pipe would fill and block the server.
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed flags
            command, stdout=log_file, stderr=subprocess.STDOUT, env=child_env
        )
    return StartingSandbox(process, port, ca_path, ready_file, log_path)


@contextmanager
def run_sandbox(
    tmp_dir: str | os.PathLike[str],
    *,
    startup_timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    **options: object,
) -> Iterator[SandboxProcess]:
    """Start `python -m sandbox serve` on `port` (0: a free one) and wait until it listens;
    stop it (SIGTERM, then SIGKILL) on exit.

    `options` map to serve flags (`signature_secret="x"`, `latency_ms=150`, ...); `env` adds
    variables (`SANDBOX_PROXY_API_TOKEN`, which has no flag). The CA, the ready file and the
    log live in `tmp_dir`.
    """
    starting = start_sandbox(tmp_dir, env=env, port=port, **options)
    try:
        sandbox = starting.wait(startup_timeout)
        try:
            yield sandbox
        finally:
            sandbox.client.close()
    finally:
        starting.stop()


def _wait_ready(
    process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, timeout: float
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return dict(json.loads(ready_file.read_text()))
        if process.poll() is not None:
            raise RuntimeError(
                f"sandbox exited with status {process.returncode}:\n"
                + log_path.read_text(errors="replace")
            )
        time.sleep(0.05)
    raise TimeoutError(
        f"sandbox not ready after {timeout} s:\n" + log_path.read_text(errors="replace")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
