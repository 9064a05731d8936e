"""Fixtures for the sandbox tests: a running sandbox, vonage SDK clients, a webhook receiver."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from vonage import Auth, HttpClientOptions, Vonage
from webhook_receiver import Receiver

from sandbox.testing import SandboxProcess, run_sandbox

API_KEY = "sandbox-key"
API_SECRET = "sandbox-secret"
# Fast retries so that retry tests take milliseconds.
FAST_RETRIES: dict[str, Any] = {"retry_base_seconds": 0.05, "retry_max_attempts": 4}


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox for every test that needs no special settings."""
    with run_sandbox(tmp_path_factory.mktemp("sandbox"), seed=7, **FAST_RETRIES) as sb:
        yield sb


@pytest.fixture
def sb(shared_sandbox: SandboxProcess) -> SandboxProcess:
    """The shared sandbox, reset to its starting state."""
    shared_sandbox.client.reset()
    return shared_sandbox


@pytest.fixture
def start_sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., SandboxProcess]]:
    """Start a dedicated sandbox with given options; stopped at the end of the test."""
    stack: list[Any] = []

    def start(**options: Any) -> SandboxProcess:
        manager = run_sandbox(tmp_path_factory.mktemp("sandbox"), **{**FAST_RETRIES, **options})
        stack.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


@pytest.fixture
def vonage_for() -> Iterator[Callable[..., Vonage]]:
    """Build a real vonage SDK client pointed at a sandbox and trusting only its CA."""
    clients: list[Vonage] = []

    def build(
        sb: SandboxProcess, key: str = API_KEY, secret: str = API_SECRET, auth: Auth | None = None
    ) -> Vonage:
        client = Vonage(
            auth or Auth(api_key=key, api_secret=secret),
            HttpClientOptions(api_host=sb.host, rest_host=sb.host, timeout=5),
        )
        client.http_client._session.verify = sb.ca_path
        client.http_client._session.trust_env = False
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.http_client._session.close()


@pytest.fixture
def vonage(sb: SandboxProcess, vonage_for: Callable[..., Vonage]) -> Vonage:
    """An SDK client with the right credentials, on the shared sandbox."""
    return vonage_for(sb)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver for one test."""
    server = Receiver()
    yield server
    server.close()
