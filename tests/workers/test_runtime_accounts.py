"""A worker's Vonage clients under several accounts: one per account per thread, each built
with its own account's credentials, the primary's when none is named."""

from __future__ import annotations

import contextvars
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


def test_a_fan_out_call_runs_in_its_submitters_log_context_on_a_thread_of_its_own():
    from shared.logging import bind_log_context, log_context
    from workers.runtime import FanOut

    def seen() -> tuple[dict[str, str], str]:
        return dict(log_context()), threading.current_thread().name

    def submit() -> tuple[dict[str, str], str]:
        bind_log_context(conversation_id="c1")
        return fan_out.submit(seen).result(timeout=5)

    with FanOut(1, thread_name_prefix="fan") as fan_out:
        # in a context of its own, so that the field stays out of the other tests
        context, thread = contextvars.Context().run(submit)
    assert context.get("conversation_id") == "c1"
    assert thread.startswith("fan") and thread != threading.current_thread().name
