"""Signed webhooks for all five methods, checked independently and with the vonage SDK."""

import hashlib
import hmac
import time
from collections.abc import Callable

import pytest
import requests
from vonage import Auth, Vonage
from vonage_sms import SmsError, SmsMessage
from webhook_receiver import Receiver

from sandbox.testing import SandboxProcess

VIRTUAL = "447700900100"
HANDSET = "447700900001"
SECRET = "s3cret&=value"  # characters the algorithm must not confuse with separators
# Each method also exercises a webhook format, so every format carries a signature once.
FORMAT_FOR = {"md5hash": "form", "md5": "get", "sha1": "json", "sha256": "form", "sha512": "json"}


def expected_signature(params: dict[str, str], secret: str, method: str) -> str:
    """VONAGE.md "Signed webhooks", written out again here, apart from the sandbox's code."""
    pieces = []
    for key in sorted(params):
        if key != "sig":
            pieces.append(f"&{key}={params[key].replace('&', '_').replace('=', '_')}")
    base = "".join(pieces)
    if method == "md5hash":
        return hashlib.md5((base + secret).encode()).hexdigest()  # noqa: S324 - Vonage's scheme
    return hmac.new(secret.encode(), base.encode(), getattr(hashlib, method)).hexdigest()


@pytest.mark.parametrize("method", list(FORMAT_FOR))
def test_inbound_and_receipt_webhooks_are_signed(
    start_sandbox: Callable[..., SandboxProcess],
    vonage_for: Callable[..., Vonage],
    receiver: Receiver,
    method: str,
) -> None:
    sb = start_sandbox(
        signature_secret=SECRET, signature_method=method, webhook_format=FORMAT_FOR[method]
    )
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL, "moHttpUrl": receiver.url}])

    sb.client.send_from_handset(HANDSET, VIRTUAL, "a=b & c=d")
    vonage_for(sb).sms.send(
        SmsMessage(to=HANDSET, from_=VIRTUAL, text="x", callback=f"{receiver.base_url}/dlr")
    )

    for webhook in receiver.wait_for(2):
        params = webhook.params
        assert params["sig"] == expected_signature(params, SECRET, method)
        assert abs(time.time() - int(params["timestamp"])) < 60 and params["nonce"]
        assert params["sig"] != expected_signature({**params, "text": "forged"}, SECRET, method)
        assert params["sig"] != expected_signature(params, "other-secret", method)
        if method != "md5hash":  # the SDK has no md5hash
            sdk = Auth(api_key="sandbox-key", signature_secret=SECRET, signature_method=method)
            assert sdk.check_signature(dict(params))
            assert not sdk.check_signature({**params, "msisdn": "447700900002"})


def test_unsigned_when_no_secret(sb: SandboxProcess, receiver: Receiver) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL, "moHttpUrl": receiver.url}])

    sb.client.send_from_handset(HANDSET, VIRTUAL, "hi")

    [webhook] = receiver.wait_for(1)
    assert not {"sig", "timestamp", "nonce"} & set(webhook.params)


def test_signed_sms_requests(
    start_sandbox: Callable[..., SandboxProcess], vonage_for: Callable[..., Vonage]
) -> None:
    sb = start_sandbox(signature_secret=SECRET, signature_method="sha256")
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])
    params = {
        "api_key": "sandbox-key",
        "from": VIRTUAL,
        "to": HANDSET,
        "text": "signed by hand",
        "timestamp": str(int(time.time())),
    }
    params["sig"] = expected_signature(params, SECRET, "sha256")

    reply = requests.post(f"{sb.url}/sms/json", data=params, verify=sb.ca_path, timeout=5)
    assert reply.json()["messages"][0]["status"] == "0"

    stale = {**params, "timestamp": str(int(time.time()) - 3600)}
    stale["sig"] = expected_signature(stale, SECRET, "sha256")
    reply = requests.post(f"{sb.url}/sms/json", data=stale, verify=sb.ca_path, timeout=5)
    assert reply.json()["messages"][0]["status"] == "14"

    # The SDK signs every model field, unset ones included, which it then does not send: the
    # signature cannot match (VONAGE.md, "Signing bug").
    signer = Auth(api_key="sandbox-key", signature_secret=SECRET, signature_method="sha256")
    with pytest.raises(SmsError, match="error code 14"):
        vonage_for(sb, auth=signer).sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text="x"))
