"""The control API, the CLI, the CA's reuse, and robustness against bad input."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.testing import SandboxProcess, run_sandbox, sandbox_args

VIRTUAL = "447700900100"
HANDSET = "447700900001"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def control(sb: SandboxProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    return sb.client._session.request(method, f"{sb.url}/_sandbox{path}", timeout=5, **kwargs)


def test_health_and_stats(sb: SandboxProcess) -> None:
    assert sb.client.health()
    stats = sb.client.stats()
    assert stats["sms_sent"] == 0 and stats["available_numbers"] == 40
    assert stats["webhooks"] == {"pending": 0, "delivered": 0, "failed": 0, "undeliverable": 0}


def test_reset_restores_numbers_and_clears_records_and_faults(sb: SandboxProcess) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    sb.client.add_inventory([{"country": "FR", "msisdn": "33612345678", "cost": "0.80"}])
    sb.client.send_from_handset(HANDSET, VIRTUAL, "hi")
    sb.client.set_faults(latency_ms=5, sms_script=["1"])

    sb.client.reset()

    assert sb.client.owned_numbers() == [] and sb.client.webhooks() == []
    assert sb.client.set_faults() == {
        "latency_ms": 0,
        "throttle_rate": 0.0,
        "error_rate": 0.0,
        "sms_script": [],
    }
    assert sb.client.stats()["available_numbers"] == 40


def test_added_inventory_is_searchable_with_a_guessed_type(sb: SandboxProcess) -> None:
    sb.client.add_inventory([{"country": "FR", "msisdn": "33612345678", "cost": "0.80"}])

    [number] = [n for n in control(sb, "GET", "/inventory").json() if n["country"] == "FR"]
    assert number == {
        "country": "FR",
        "msisdn": "33612345678",
        "type": "mobile-lvn",
        "cost": "0.80",
        "features": ["VOICE", "SMS"],
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", f"/handsets/{HANDSET}/send", {"to": VIRTUAL, "text": "hi"}, 404),  # not owned
        ("POST", "/handsets/12/send", {"to": VIRTUAL, "text": "hi"}, 400),
        ("POST", "/handsets/+447700900001/send", {"to": VIRTUAL, "text": "hi"}, 400),
        ("POST", f"/handsets/{HANDSET}/send", {"to": VIRTUAL}, 400),
        ("POST", f"/handsets/{HANDSET}/send", {"to": VIRTUAL, "text": ""}, 400),
        ("POST", f"/handsets/{HANDSET}/send", {"to": 7, "text": "hi"}, 400),
        ("POST", f"/handsets/{HANDSET}/send", {"to": VIRTUAL, "text": "x", "duplicates": 0}, 400),
        (
            "POST",
            f"/handsets/{HANDSET}/send",
            {"to": VIRTUAL, "text": "x", "duplicates": True},
            400,
        ),
        ("POST", f"/handsets/{HANDSET}/send", [1, 2], 400),
        ("POST", "/faults", {"throttle_rate": 2}, 400),
        ("POST", "/faults", {"sms_script": ["nope"]}, 400),
        ("POST", "/faults", {"sms_script": ["http99"]}, 400),
        ("POST", "/faults", {"bogus": 1}, 400),
        ("POST", "/owned", {"numbers": [{"country": "GB", "msisdn": "+44"}]}, 400),
        ("POST", "/inventory", {"numbers": "all"}, 400),
        ("POST", "/inventory", {"numbers": [{"country": "GB"}]}, 400),
        ("GET", "/nowhere", None, 404),
        ("DELETE", "/sms", None, 405),
    ],
)
def test_bad_control_requests_are_client_errors(
    sb: SandboxProcess, method: str, path: str, body: object, status: int
) -> None:
    reply = control(sb, method, path, json=body)

    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("application/json")


def test_bad_faults_change_nothing(sb: SandboxProcess) -> None:
    control(sb, "POST", "/faults", json={"latency_ms": 10, "error_rate": 5})

    assert sb.client.set_faults()["latency_ms"] == 0


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/sms/json", {"data": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}),
        (
            "POST",
            "/sms/json",
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/sms/json", {"json": {"from": ["a"], "to": {"x": 1}, "text": None}}),
        ("POST", "/sms/json", {"data": {"from": VIRTUAL, "to": HANDSET, "text": "x", "ttl": "١٢"}}),
        ("GET", "/ni/basic/json", {"params": {"number": "٤٤٧٧٠٠٩٠٠٠٠١"}}),
        ("GET", "/ni/basic/json", {"params": {"number": "+44 (0) 7700"}}),
        ("GET", "/account/numbers", {"params": {"index": "²"}}),
        ("POST", "/number/buy", {"data": {"country": "", "msisdn": "x"}}),
        ("POST", "/number/update", {"json": {"country": "GB"}}),
        ("POST", "/sms/json", {"data": {"from": VIRTUAL, "to": HANDSET, "text": "x", "ttl": "²"}}),
        ("POST", "/sms/json", {"data": {"from": VIRTUAL, "to": "٤٤٧٧٠٠٩٠٠٠٠١", "text": "x"}}),
        ("POST", "/_sandbox/handsets/٤٤٧٧٠٠٩٠٠٠٠١/send", {"json": {"to": VIRTUAL, "text": "x"}}),
        ("GET", "/sms/json", {}),
    ],
)
def test_bad_api_input_never_causes_a_server_error(
    sb: SandboxProcess, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    reply = sb.client._session.request(
        method, sb.url + path, auth=("sandbox-key", "sandbox-secret"), timeout=5, **kwargs
    )

    assert reply.status_code < 500
    reply.json()


def test_option_flags() -> None:
    assert sandbox_args({"retry_base_seconds": 0.1, "strict_sender": False, "seed": None}) == [
        "--retry-base-seconds",
        "0.1",
        "--no-strict-sender",
    ]


def test_ca_is_reused_across_restarts(tmp_path: Path) -> None:
    with run_sandbox(tmp_path) as first:
        ca = Path(first.ca_path).read_bytes()
        first_port = first.port
    assert not (tmp_path / "sandbox-ready.json").exists()  # removed on a clean shutdown
    with run_sandbox(tmp_path) as second:
        assert Path(second.ca_path).read_bytes() == ca
        assert second.client.health()  # the new leaf certificate chains to the kept CA
    assert first_port > 0


def test_startup_failure_reports_the_error(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="invalid choice: 'rot13'"),
        run_sandbox(tmp_path, signature_method="rot13"),
    ):
        pass


def run_cli(sb: SandboxProcess, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env |= {"SANDBOX_URL": sb.url, "SANDBOX_CA": sb.ca_path}
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout


def test_cli_drives_a_running_sandbox(sb: SandboxProcess) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])

    assert VIRTUAL in run_cli(sb, "numbers")
    assert "sent in 1 part(s)" in run_cli(sb, "send", HANDSET, VIRTUAL, "from the CLI")
    assert "latency_ms: 150" in run_cli(sb, "faults", "--latency-ms", "150", "--script", "1,0")
    assert json.loads(run_cli(sb, "inbox", HANDSET, "--json")) == []
    assert "no messages" in run_cli(sb, "inbox", HANDSET)
    webhooks = run_cli(sb, "webhooks")
    assert "inbound" in webhooks and "undeliverable" in webhooks
    assert sb.client.set_faults()["sms_script"] == ["1", "0"]


def test_cli_reports_an_unreachable_sandbox(sb: SandboxProcess, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "stats", "--url", "https://127.0.0.1:9"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert done.returncode == 1 and done.stderr.startswith("sandbox: ")


def test_start_sandbox_fixture_passes_options(
    start_sandbox: Callable[..., SandboxProcess],
) -> None:
    sb = start_sandbox(latency_ms=25, owned="GB:447700900150-447700900151")

    assert sb.client.set_faults()["latency_ms"] == 25
    assert [n["msisdn"] for n in sb.client.owned_numbers()] == ["447700900150", "447700900151"]
    assert sb.host == f"127.0.0.1:{sb.port}" and sb.url.endswith(str(sb.port))
