"""The Procfile, docker-compose.yml and Dockerfile reference only commands that exist, and
deploy safely: loopback ports, a Redis with a password that never evicts, pinned images, no
root, runtime dependencies only, no history or secrets in the image."""

from __future__ import annotations

import importlib
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

from devtools.stack import worker_command

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
    monkeypatch.setenv("SMSPROXY_API_TOKENS", "x-0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", "x")  # web refuses to start without one
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                     if line.strip())
    assert set(processes) == {"web", "worker", "beat"}
    for command in processes.values():
        _module_exists(shlex.split(command))


def test_the_stacks_and_compose_run_the_procfiles_worker():
    """One worker command: the dev and test stacks (devtools/stack.py) and compose run it as the
    Procfile says, with their own interpreter and a hostname of their own."""
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                     if line.strip())
    procfile = shlex.split(processes["worker"])
    stack = worker_command("worker1@%h")
    assert stack[:3] == [sys.executable, "-m", "celery"]
    assert ["celery", *stack[3:stack.index("--hostname")]] == procfile
    assert _compose()["services"]["worker"]["command"] == procfile
    # mingle waits a second at each start for neighbours' revoked task ids: none are revoked
    assert "--without-mingle" in procfile


def test_compose_parses_and_runs_only_real_commands(monkeypatch):
    monkeypatch.setenv("SMSPROXY_API_TOKENS", "x-0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", "x")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sandbox", "web", "worker", "beat", "prometheus", "grafana"}
    # monitoring starts only when asked for: `docker compose --profile monitoring up`
    assert {name for name, s in services.items() if "monitoring" in s.get("profiles", [])} \
        == {"prometheus", "grafana"}
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


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {name.lower(): version for name, version in
            re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M)}


def test_published_ports_are_bound_to_loopback():
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_compose_redis_needs_a_password_and_never_evicts():
    compose = _compose()
    command = compose["services"]["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:-[^}]+\}", password), password
    assert command[command.index("--maxmemory") + 1]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    for name in ("web", "worker", "beat"):
        url = compose["services"][name]["environment"]["REDIS_URL"]
        assert url.startswith(f"redis://:{password}@redis:"), (name, url)


def test_images_are_pinned_to_exact_releases():
    redis_image = _compose()["services"]["redis"]["image"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-[a-z0-9]+)?", redis_image), redis_image
    [base] = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    for name in ("prometheus", "grafana"):
        image = _compose()["services"][name]["image"]
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", image), image


def test_no_process_runs_as_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    for name, service in _compose()["services"].items():
        assert str(service.get("user", "")).split(":")[0] not in {"root", "0"}, name


def test_the_image_gets_runtime_dependencies_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert any("-r requirements-runtime.lock" in line for line in installs), installs
    assert not any(re.search(r"\brequirements\.lock", line) for line in installs), installs
    assert not any(".[" in line or "-e " in line for line in installs), installs
    runtime, everything = _pins("requirements-runtime.lock"), _pins("requirements.lock")
    for tool in ("pytest", "mypy", "ruff", "schemathesis", "hypothesis", "fakeredis", "pyyaml"):
        assert tool not in runtime and tool in everything, tool
    # compiled against requirements.lock: the image runs exactly the versions the tests ran
    assert {name: everything.get(name) for name in runtime} == runtime
    header = (ROOT / "requirements-runtime.lock").read_text().splitlines()[1]
    assert "uv pip compile pyproject.toml" in header and "--extra" not in header


def test_project_dependencies_are_all_in_the_runtime_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins("requirements-runtime.lock")
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower()
        assert name in runtime, name


def test_dockerignore_keeps_history_environments_and_secrets_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".devstack", ".sandbox", "*.pem", "*.key", ".env"} <= ignored
    # and keeps what the image builds from
    assert not ignored & {"README.md", "pyproject.toml", "requirements-runtime.lock",
                          "gunicorn.conf.py", "shared", "web", "workers", "sandbox"}


def test_nothing_deployed_serves_the_handsets_page():
    """The sandbox's handsets page is a dev-stack tool: off unless `--handsets-port` asks for
    it, and neither compose's sandbox nor any other process here asks (nor sets the variable)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        command = " ".join(service.get("command", []))
        assert "--handsets" not in command and "--proxy-api" not in command, name
        assert not any(k.startswith("SANDBOX_HANDSETS") for k in service.get("environment", {}))
    assert "sandbox" not in (ROOT / "Procfile").read_text()
    assert "handsets" not in (ROOT / "Dockerfile").read_text()


def test_gunicorn_worker_class_is_gevent_unless_set(monkeypatch):
    import runpy

    from gunicorn.config import Config

    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["worker_class"] == "gevent"
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "gthread")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["worker_class"] == "gthread"
    # each a class gunicorn can load here: gevent is installed (pinned in both locks)
    config = Config()
    for chosen, worker in (("gevent", "GeventWorker"), ("gthread", "ThreadWorker")):
        config.set("worker_class", chosen)
        assert config.worker_class.__name__ == worker


def test_gunicorn_opens_no_control_socket(tmp_path):
    """gunicorn 25.1+ binds a control socket at one path per user unless told not to; ours is
    off (gunicorn.conf.py), so two gunicorns of one user never take each other's."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from devtools.ports import free_port

    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
           "GUNICORN_WORKERS": "1", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "bench.bare_app:app", "--config",
         str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from env
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with direct.open(
                        f"http://127.0.0.1:{port}/webhooks/inbound-sms", timeout=2) as answer:
                    assert answer.status == 204
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert not (runtime / "gunicorn.ctl").exists()
        assert not (home / ".gunicorn").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
