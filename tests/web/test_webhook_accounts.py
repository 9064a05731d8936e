"""Webhooks under several Vonage accounts: each is verified with the secret of the account its
`api-key` names; one naming no account, or an unknown one, is 401 before any field is judged."""

import time

import pytest

from shared.settings import SignatureMethod
from shared.signatures import sign

ACCOUNTS = {"SMSPROXY_VONAGE_ACCOUNTS": "key1:secret1:sig-one,key2:secret2:sig-two",
            "VONAGE_API_KEY": "", "VONAGE_API_SECRET": "",
            "VONAGE_SIGNATURE_METHOD": "sha256", "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS": "false"}
INBOUND = {"msisdn": "447400123456", "to": "447700900100", "text": "hi", "type": "text"}
RECEIPT = {"msisdn": "447400123456", "to": "447700900100", "status": "delivered",
           "err-code": "0", "client-ref": "relay-m-1"}


def signed(params: dict[str, str], secret: str) -> dict[str, str]:
    stamped = {**params, "timestamp": str(int(time.time())), "nonce": "n"}
    return {**stamped, "sig": sign(stamped, secret, SignatureMethod.SHA256)}


@pytest.fixture
def client(make_client):
    return make_client(**ACCOUNTS)


@pytest.mark.parametrize(("path", "params"), [("/webhooks/inbound-sms", INBOUND),
                                              ("/webhooks/delivery-receipt", RECEIPT)])
def test_each_account_signs_its_own_webhooks(client, publisher, fake_redis, path, params):
    first = signed({**params, "messageId": "m-1", "api-key": "key1"}, "sig-one")
    second = signed({**params, "messageId": "m-2", "api-key": "key2"}, "sig-two")
    assert client.post(path, data=first).status_code == 200
    assert client.post(path, data=second).status_code == 200
    # an inbound SMS is queued; a receipt is recorded by web (its dedupe marker says so)
    handled = (publisher.published if "inbound" in path
               else fake_redis.keys("smsproxy:seen:receipt:*"))
    assert len(handled) == 2


@pytest.mark.parametrize(("api_key", "secret", "problem"), [
    ("key2", "sig-one", "bad sig"),  # another account's secret vouches for nothing here
    ("key9", "sig-one", "unknown api-key"),
    (None, "sig-one", "missing api-key"),
])
def test_a_webhook_not_signed_by_the_account_it_names_is_401(
    client, publisher, api_key, secret, problem
):
    params = {**INBOUND, "messageId": "m-1"} | ({"api-key": api_key} if api_key else {})
    response = client.post("/webhooks/inbound-sms", data=signed(params, secret))
    assert response.status_code == 401
    assert response.json["error"]["message"] == problem
    assert publisher.published == []


def test_an_unknown_api_key_is_401_before_any_field(client):
    response = client.post("/webhooks/inbound-sms", data={"api-key": "key9", "to": "1"})
    assert response.status_code == 401


def test_one_account_keeps_ignoring_the_api_key(make_client, publisher):
    client = make_client(VONAGE_SIGNATURE_SECRET="s3cret", VONAGE_SIGNATURE_METHOD="sha256")
    params = {**INBOUND, "messageId": "m-1", "api-key": "whatever"}
    assert client.post("/webhooks/inbound-sms", data=signed(params, "s3cret")).status_code == 200
