"""Abuse defences end to end: gunicorn, a Celery worker process, Redis and the sandbox over
HTTPS. Blocked numbers, loops through our own numbers, out-of-session replies, caps, long
messages."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack, StackConfig
from sandbox.signing import sign
from shared.metrics import legacy_series

pytestmark = pytest.mark.e2e

A = "447400123456"
B = "447400654321"
OOS_REPLY = "This conversation has ended."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2",
        extra_env={"SMSPROXY_OUT_OF_SESSION_REPLY": OOS_REPLY,
                   # a burst of 3, then a token per 100 minutes: no refill within a test
                   "SMSPROXY_CONVERSATION_RELAY_BURST": "3",
                   "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0.01",
                   "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "2"},
    )
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def counter(stack: Stack, name: str) -> int:
    """A counter's value as /metrics exports it (0 when it was never incremented); `name` is
    its dotted name in the code, which stands for a family and labels."""
    family, labels = legacy_series(name)
    text = requests.get(f"{stack.web_url}/metrics", timeout=10).text
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family and sample.labels == labels:
                return int(sample.value)
    return 0


def wait_for_counter(stack: Stack, name: str, at_least: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = counter(stack, name)
        if value >= at_least:
            return value
        assert time.monotonic() < deadline, f"{name} is {value}, wanted {at_least}"
        time.sleep(0.1)


def open_conversation(stack: Stack, first: str, second: str) -> tuple[str, str, str]:
    """An active conversation: its id and each side's proxy (msisdns); intros delivered."""
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{first}"}, {"number": f"+{second}"}],
    })
    assert created.status_code == 202, created.text
    conversation = stack.wait_for_status(created.json()["id"], "active")
    proxies = [p["proxy_number"].lstrip("+") for p in conversation["participants"]]
    return conversation["id"], proxies[0], proxies[1]


def texts_to(stack: Stack, handset: str) -> list[str]:
    return [m["text"] for m in stack.sandbox.client.inbox(handset)]


def test_a_blocked_number_is_not_relayed_and_cannot_join(stack):
    sandbox = stack.sandbox.client
    conversation_id, proxy_a, proxy_b = open_conversation(stack, A, B)
    sandbox.wait_for_inbox(B, 1)
    blocked = stack.api("PUT", f"/v1/blocked-numbers/+{A}", {"reason": "reported"})
    assert blocked.status_code == 200, blocked.text

    before = counter(stack, "smsproxy.inbound.blocked")
    sandbox.send_from_handset(A, proxy_a, "let me pay you directly")
    sandbox.send_from_handset(B, proxy_b, "are you there?")
    wait_for_counter(stack, "smsproxy.inbound.blocked", before + 2)
    sandbox.wait_until_idle(timeout=20)
    assert "let me pay you directly" not in texts_to(stack, B)
    assert "are you there?" not in texts_to(stack, A)

    refused = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{B}"}, {"number": f"+{A}"}],
    })
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "participants[1].number"

    assert stack.api("DELETE", f"/v1/blocked-numbers/+{A}").status_code == 204
    sandbox.send_from_handset(A, proxy_a, "unblocked now")
    assert sandbox.wait_for_inbox(B, 2, timeout=20)[-1]["text"] == "unblocked now"
    stack.api("DELETE", f"/v1/conversations/{conversation_id}")


def test_our_own_numbers_are_never_relayed_from_or_made_participants(stack):
    sandbox = stack.sandbox.client
    first, second = (n["number"].lstrip("+") for n in stack.api("GET", "/v1/numbers")
                     .json()["numbers"][:2])
    before = counter(stack, "smsproxy.inbound.own_number")
    # one of our numbers texts another (an auto-responder loop would start like this)
    sandbox.send_from_handset(first, second, "ping")
    wait_for_counter(stack, "smsproxy.inbound.own_number", before + 1)
    sandbox.wait_until_idle(timeout=20)
    assert sandbox.inbox(first) == []  # not even the out-of-session reply

    refused = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{A}"}, {"number": f"+{first}"}],
    })
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "participants[1].number"


def test_out_of_session_replies_go_once_per_sender_and_never_to_premium_numbers(stack):
    sandbox = stack.sandbox.client
    stranger, premium = "447400700001", "449098765432"  # a UK mobile; UK premium rate (09)
    pool = stack.api("GET", "/v1/numbers").json()["numbers"][0]["number"].lstrip("+")
    repeats = counter(stack, "smsproxy.out_of_session.repeat")
    costly = counter(stack, "smsproxy.out_of_session.costly_number")
    sandbox.send_from_handset(stranger, pool, "hello?")
    assert sandbox.wait_for_inbox(stranger, 1, timeout=20)[0]["text"] == OOS_REPLY
    sandbox.send_from_handset(stranger, pool, "hello??")
    sandbox.send_from_handset(premium, pool, "call me")
    wait_for_counter(stack, "smsproxy.out_of_session.repeat", repeats + 1)
    wait_for_counter(stack, "smsproxy.out_of_session.costly_number", costly + 1)
    sandbox.wait_until_idle(timeout=20)
    assert len(sandbox.inbox(stranger)) == 1
    assert sandbox.inbox(premium) == []


def test_a_conversation_over_its_rate_relays_no_more_and_the_sender_is_told_once(stack):
    sandbox = stack.sandbox.client
    first, second = "447400500001", "447400500002"
    conversation_id, proxy_first, _ = open_conversation(stack, first, second)
    sandbox.wait_for_inbox(first, 1)
    sandbox.wait_for_inbox(second, 1)
    capped = counter(stack, "smsproxy.inbound.rate_capped")
    for n in range(6):
        sandbox.send_from_handset(first, proxy_first, f"buy now {n}")
    wait_for_counter(stack, "smsproxy.inbound.rate_capped", capped + 3)
    relayed = sandbox.wait_for_inbox(second, 1 + 3, timeout=20)[1:]
    notices = sandbox.wait_for_inbox(first, 1 + 1, timeout=20)[1:]
    sandbox.wait_until_idle(timeout=20)
    assert len(sandbox.inbox(second)) == 1 + 3 and len(sandbox.inbox(first)) == 1 + 1
    assert all(m["text"].startswith("buy now") for m in relayed)
    assert "a few minutes" in notices[0]["text"]
    trail = stack.api("GET", f"/v1/conversations/{conversation_id}/messages").json()["messages"]
    reasons = [m.get("not_relayed") for m in trail if m["direction"] == "inbound"]
    assert sorted(reasons, key=str) == [None] * 3 + ["rate_capped"] * 3


def test_at_the_daily_send_limit_relays_go_on_and_automatic_replies_stop(tmp_path):
    # 2 intros and a relay reach the limit of 3
    config = StackConfig(state_dir=tmp_path, pool_targets="GB=2", extra_env={
        "SMSPROXY_OUT_OF_SESSION_REPLY": OOS_REPLY, "SMSPROXY_DAILY_SEND_LIMIT": "3"})
    with Stack(config) as limited:
        limited.provision_pool(expected=2)
        sandbox = limited.sandbox.client
        _, proxy_a, _ = open_conversation(limited, A, B)
        sandbox.wait_for_inbox(A, 1)
        sandbox.wait_for_inbox(B, 1)
        sandbox.send_from_handset(A, proxy_a, "first")
        sandbox.wait_for_inbox(B, 2, timeout=20)
        assert wait_for_counter(limited, "smsproxy.sends.daily_limit_reached", 1) == 1
        sandbox.send_from_handset(A, proxy_a, "second")  # the product: still relayed
        assert sandbox.wait_for_inbox(B, 3, timeout=20)[-1]["text"] == "second"
        sandbox.send_from_handset("447400700002", proxy_a, "who is this?")
        wait_for_counter(limited, "smsproxy.sends.non_essential_stopped", 1)
        sandbox.wait_until_idle(timeout=20)
        assert sandbox.inbox("447400700002") == []
        assert counter(limited, "smsproxy.sends.daily_limit_reached") == 1
        assert "daily send limit of 3 reached" in (limited.logs / "worker1.log").read_text()


def test_one_part_claiming_255_parts_is_relayed_as_one_sms(stack):
    sandbox = stack.sandbox.client
    first, second = "447400600001", "447400600002"
    _, proxy_first, _ = open_conversation(stack, first, second)
    sandbox.wait_for_inbox(second, 1)
    # what a crafted handset's one part looks like once Vonage posts it (signed as Vonage
    # signs, by the sandbox's own signer)
    params = {
        "msisdn": first, "to": proxy_first, "messageId": "0A00000000FFFF01", "text": "hello",
        "type": "text", "concat": "true", "concat-ref": "77", "concat-total": "255",
        "concat-part": "1",
    }
    posted = requests.post(f"{stack.web_url}/webhooks/inbound-sms", timeout=10, data=sign(
        params, stack.config.signature_secret, stack.config.signature_method))
    assert posted.status_code == 200, posted.text
    [relayed] = sandbox.wait_for_inbox(second, 2, timeout=30)[1:]
    assert relayed["text"] == "hello[…]"
    [send] = [s for s in sandbox.sms_log() if s["to"] == second and s["text"] == "hello[…]"]
    assert len(send["parts"]) == 1


def test_a_long_text_is_relayed_in_at_most_ten_parts(stack):
    sandbox = stack.sandbox.client
    first, second = "447400600003", "447400600004"
    _, proxy_first, _ = open_conversation(stack, first, second)
    sandbox.wait_for_inbox(second, 1)
    text = " ".join(f"word{i:04d}" for i in range(180))  # 1619 characters: 11 parts
    sent_parts = sandbox.send_from_handset(first, proxy_first, text)
    assert len(sent_parts) == 11
    [relayed] = sandbox.wait_for_inbox(second, 2, timeout=30)[1:]
    assert relayed["text"].endswith("(...)") and text.startswith(relayed["text"][:-5])
    [send] = [s for s in sandbox.sms_log() if s["to"] == second and s["text"] == relayed["text"]]
    assert len(send["parts"]) == 10
    assert wait_for_counter(stack, "smsproxy.inbound.truncated", 1) >= 1


def test_logs_carry_no_full_number_or_body(stack):
    """Runs after the module's other tests: drops, suppressions and caps log masked numbers."""
    secrets = [A, B, "447400700001", "449098765432", "447400500001", "447400600001",
               "let me pay you directly", "buy now", "word0001"]
    for log in stack.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {log.name}"
