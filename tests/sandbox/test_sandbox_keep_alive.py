"""The sandbox keeps many SDK clients' HTTPS connections alive at once, as Vonage does: a
worker's pool of clients (32 by default) must not pay a TLS handshake per send."""

from collections.abc import Callable

import pytest
from vonage import Vonage
from vonage_sms import SmsMessage

from sandbox.testing import SandboxProcess

VIRTUAL = "447700900100"
HANDSET = "447700900001"
CLIENTS = 40  # more than cheroot's default of 10 idle keep-alive connections


@pytest.fixture(autouse=True)
def owned_number(sb: SandboxProcess) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": VIRTUAL}])


def test_forty_idle_sdk_connections_are_all_kept_alive(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    clients = [vonage_for(sb) for _ in range(CLIENTS)]
    closing = []
    for n, client in enumerate(clients):  # each connection stays open, idle, as the next opens
        client.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text=f"first {n}"))
        if client.http_client.last_response.headers.get("Connection", "").lower() == "close":
            closing.append(n)

    assert closing == []
    for n, client in enumerate(clients):  # and each is used again
        client.sms.send(SmsMessage(to=HANDSET, from_=VIRTUAL, text=f"second {n}"))
        assert client.http_client.last_response.headers.get("Connection", "").lower() != "close"
