"""A worker's Vonage clients under several accounts: a pool per account, each client built with
its own account's credentials (the primary's when none is named) and used by one call at a
time, whatever thread or greenlet makes the call."""

from __future__ import annotations

import contextvars
import threading

from shared.accounts import VonageAccount
from shared.settings import Settings
from shared.vonage_gateway import SentSms
from tests.doubles import FakeQueue, FakeVonage
from workers.runtime import Runtime

ACCOUNTS = {"SMSPROXY_VONAGE_ACCOUNTS": "key1:secret1:sig1,key2:secret2:sig2",
            "VONAGE_API_KEY": "", "VONAGE_API_SECRET": ""}


def _send(rt: Runtime, key: str) -> SentSms:
    return rt.accounts().port(key).send_sms(
        sender="447700900001", recipient="447400000001", text="hi", client_ref="r",
        callback=None)


def test_each_account_has_its_own_clients_reused_across_threads(make_settings, make_services):
    built: list[str] = []
    clients: list[FakeVonage] = []

    def factory(settings: Settings, account: VonageAccount | None) -> FakeVonage:
        assert account is not None
        built.append(account.api_key)
        clients.append(FakeVonage())
        return clients[-1]

    settings = make_settings(**ACCOUNTS)
    rt = Runtime(settings, FakeQueue(), services=make_services(**ACCOUNTS),
                 vonage_factory=factory)

    assert rt.accounts().port("key1") is not rt.accounts().port("key2")
    assert rt.vonage() is rt.vonage("key1")  # the primary by default
    assert rt.vonage("unknown") is rt.vonage("key1")
    assert built == []  # a client is built for a call, not before
    _send(rt, "key1")
    _send(rt, "key2")
    other = threading.Thread(target=_send, args=(rt, "key2"))
    other.start()
    other.join()
    # one after the other, even from another thread, a call reuses the idle client
    assert built == ["key1", "key2"]
    assert [len(c.sent) for c in clients] == [1, 2]


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


def test_concurrent_calls_never_share_a_client(make_settings, make_services):
    inside = threading.Barrier(2, timeout=10)
    built: list[object] = []

    class Holding(FakeVonage):
        def send_sms(self, **kwargs: object) -> SentSms:
            inside.wait()  # both calls are in flight at once: each must hold its own client
            return super().send_sms(**kwargs)  # type: ignore[arg-type]

    def factory(settings: Settings, account: VonageAccount | None) -> FakeVonage:
        built.append(Holding())
        return built[-1]  # type: ignore[return-value]

    settings = make_settings(**ACCOUNTS)
    rt = Runtime(settings, FakeQueue(), services=make_services(**ACCOUNTS),
                 vonage_factory=factory)
    threads = [threading.Thread(target=_send, args=(rt, "key1")) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 2
    assert all(len(c.sent) == 1 for c in built)  # type: ignore[attr-defined]
