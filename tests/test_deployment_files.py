"""The Procfile, docker-compose.yml and Dockerfile reference only commands that exist."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _module_exists(command: list[str]) -> None:
    """gunicorn APP:obj, celery -A module, python -m module: each target must import."""
    if command[0] == "gunicorn":
        module, _, attribute = command[1].partition(":")
        assert hasattr(importlib.import_module(module), attribute)
        assert (ROOT / command[command.index("--config") + 1]).exists()
    elif command[0] == "celery":
        app = importlib.import_module(command[command.index("-A") + 1]).app
        assert command[command.index("-A") + 2] in {"worker", "beat"}
        assert app.main == "smsproxy"
    elif command[:2] == ["python", "-m"]:
        importlib.import_module(command[2])
    else:
        raise AssertionError(f"unexpected command {command}")


def test_procfile_processes_exist(monkeypatch):
    monkeypatch.setenv("SMSPROXY_API_TOKENS", "x")
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", "x")  # web refuses to start without one
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                     if line.strip())
    assert set(processes) == {"web", "worker", "beat"}
    for command in processes.values():
        _module_exists(shlex.split(command))


def test_compose_parses_and_runs_only_real_commands(monkeypatch):
    monkeypatch.setenv("SMSPROXY_API_TOKENS", "x")
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", "x")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sandbox", "web", "worker", "beat"}
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command and "noeviction" in redis_command
    for name in ("sandbox", "web", "worker", "beat"):
        assert services[name]["build"] == "."
        _module_exists(services[name]["command"])
    environment = services["web"]["environment"]
    assert environment["VONAGE_CA_BUNDLE"].startswith("/sandbox-state")
    # the sandbox signs with what web verifies: web would refuse to start without a secret
    sandbox = services["sandbox"]["command"]
    secret = sandbox[sandbox.index("--signature-secret") + 1]
    assert secret == environment["VONAGE_SIGNATURE_SECRET"]
    assert (ROOT / "Dockerfile").exists()
