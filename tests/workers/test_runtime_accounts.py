"""A worker's Vonage clients under several accounts: one per account per thread, each built
with its own account's credentials, the primary's when none is named."""

from __future__ import annotations

import threading

from shared.accounts import VonageAccount
from shared.settings import Settings
from tests.doubles import FakeQueue, FakeVonage
from workers.runtime import Runtime

ACCOUNTS = {"SMSPROXY_VONAGE_ACCOUNTS": "key1:secret1:sig1,key2:secret2:sig2",
            "VONAGE_API_KEY": "", "VONAGE_API_SECRET": ""}


def test_one_client_per_account_and_thread(make_settings, make_services):
    built: list[tuple[str, str]] = []

    def factory(settings: Settings, account: VonageAccount | None) -> FakeVonage:
        assert account is not None
        built.append((threading.current_thread().name, account.api_key))
        return FakeVonage()

    settings = make_settings(**ACCOUNTS)
    rt = Runtime(settings, FakeQueue(), services=make_services(**ACCOUNTS),
                 vonage_factory=factory)

    first, second = rt.accounts().port("key1"), rt.accounts().port("key2")
    assert first is not second
    assert rt.vonage() is first  # the primary by default
    assert rt.vonage("key2") is second and rt.vonage("unknown") is first
    other = threading.Thread(target=rt.vonage, args=("key2",), name="other")
    other.start()
    other.join()
    assert built == [("MainThread", "key1"), ("MainThread", "key2"), ("other", "key2")]
