"""Webhooks are authenticated unless the operator says otherwise (docs/security.md, item 1)."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, SignatureMethod
from shared.signatures import sign
from tests.doubles import FakePublisher
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
INBOUND = {"msisdn": "447400123456", "to": "447700900100", "messageId": "m-1", "text": "hi"}


def test_web_refuses_to_start_without_a_signature_secret(fake_redis):
    settings = Settings.from_env({"SMSPROXY_API_TOKENS": "t-0123456789abcdef0123456789abcdef"})
    with pytest.raises(SettingsError, match="VONAGE_SIGNATURE_SECRET") as info:
        create_app(settings, redis_client=fake_redis, publisher=FakePublisher())
    assert "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS" in str(info.value)


def test_the_explicit_flag_starts_web_unsigned_with_a_warning(fake_redis, caplog):
    settings = Settings.from_env({"SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS": "true"})
    with caplog.at_level(logging.WARNING, logger="web.app"):
        create_app(settings, redis_client=fake_redis, publisher=FakePublisher())
    assert any("NOT authenticated" in r.getMessage() for r in caplog.records)


def test_a_secret_needs_no_flag(fake_redis, caplog):
    settings = Settings.from_env({"VONAGE_SIGNATURE_SECRET": "s"})
    with caplog.at_level(logging.WARNING, logger="web.app"):
        create_app(settings, redis_client=fake_redis, publisher=FakePublisher())
    assert not any("NOT authenticated" in r.getMessage() for r in caplog.records)


def test_the_wsgi_entry_point_fails_fast_naming_the_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "SMSPROXY_"))}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", "import web.wsgi"], cwd=ROOT, env=env,  # noqa: S603
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "VONAGE_SIGNATURE_SECRET" in run.stderr


@pytest.mark.parametrize("name", ["a&to", "a=b", "to&sig", "", "x y", "näme", "a.b"])
def test_a_parameter_name_outside_the_safe_set_is_400_before_the_signature(
    make_client, publisher, name
):
    client = make_client(VONAGE_SIGNATURE_SECRET="s3cret",
                         VONAGE_SIGNATURE_METHOD=SignatureMethod.SHA256.value)
    params = {**INBOUND, "timestamp": str(int(time.time())), name: "1"}
    response = client.post("/webhooks/inbound-sms", data=params)
    assert response.status_code == 400
    assert "parameter names" in response.json["error"]["message"]
    json_response = client.post("/webhooks/inbound-sms", json=params)
    assert json_response.status_code == 400
    assert publisher.published == []


def test_a_key_holding_separators_cannot_resplit_a_signed_request(make_client, publisher):
    """`nonce=n&text` + `hi` signs as `nonce` + `n` and `text` + `hi` do: another request."""
    client = make_client(VONAGE_SIGNATURE_SECRET="s3cret",
                         VONAGE_SIGNATURE_METHOD=SignatureMethod.SHA256.value)
    at = str(int(time.time()))
    genuine = {"messageId": "m-9", "msisdn": "447400123456", "nonce": "n", "text": "hi",
               "timestamp": at, "to": "447700900100"}
    sig = sign(genuine, "s3cret", SignatureMethod.SHA256)
    # Before the fix this verified and queued a message whose text the signer never sent.
    forged = {"messageId": "m-9", "msisdn": "447400123456", "nonce=n&text": "hi",
              "timestamp": at, "to": "447700900100"}
    response = client.post("/webhooks/inbound-sms", data={**forged, "sig": sig})
    assert response.status_code == 400
    assert publisher.published == []


def test_vonage_parameter_names_pass(make_client, publisher):
    client = make_client()
    params = {**INBOUND, "concat": "true", "concat-ref": "1", "concat-total": "2",
              "concat-part": "1", "message-timestamp": "2026-01-01 00:00:00", "api-key": "k",
              "keyword": "HI", "type": "text"}
    assert client.post("/webhooks/inbound-sms", data=params).status_code == 200
