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


@contextmanager
def run_sandbox(
    tmp_dir: str | os.PathLike[str],
    *,
    startup_timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    **options: object,
) -> Iterator[SandboxProcess]:
    """Start `python -m sandbox serve` on a free port; stop it (SIGTERM, then SIGKILL) on exit.

    `options` map to serve flags (`signature_secret="x"`, `latency_ms=150`, ...); `env` adds
    variables (`SANDBOX_PROXY_API_TOKEN`, which has no flag). The CA, the ready file and the
    log live in `tmp_dir`.
    """
    tmp = Path(tmp_dir).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    ready_file = tmp / "sandbox-ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = tmp / "sandbox.log"
    options = {"state_dir": tmp / "sandbox-state", **options}
    command = [sys.executable, "-m", "sandbox", "serve", "--port", "0"]
    command += ["--ready-file", str(ready_file), *sandbox_args(options)]
    # SANDBOX_* settings of the developer's shell must not leak into a test's sandbox.
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    child_env.update(env or {})
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_PROJECT_ROOT), child_env.get("PYTHONPATH")])
    )
    # The log goes to a file, not a pipe: an unread pipe would fill and block the server.
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed flags
            command, stdout=log_file, stderr=subprocess.STDOUT, env=child_env
        )
    try:
        ready = _wait_ready(process, ready_file, log_path, startup_timeout)
        client = SandboxClient(ready["url"], ready["ca"])
        try:
            yield SandboxProcess(
                process, int(ready["port"]), ready["url"], ready["ca"], log_path, client,
                ready.get("handsets_url"),
            )
        finally:
            client.close()
    finally:
        _stop(process)


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
