"""Two Vonage accounts end to end: gunicorn, a Celery worker, beat's pool task, Redis and the
sandbox over HTTPS (real SDK), the sandbox holding each key to Vonage's 30 sends per second.

The pool's target is spread over both accounts; every text goes out through the account that
owns its sender number (the sandbox refuses a number of another account, status 15); every
webhook, inbound or receipt, is signed by the account of its number and accepted."""

from __future__ import annotations

import time

import pytest

from devtools.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

SECOND = ("second-key", "second-secret", "second-signature-secret")
PAIRS = [(f"44740050000{n}", f"44740060000{n}") for n in range(3)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=4",
        signature_secret="first-signature-secret", signature_method="sha256",
        extra_accounts=(SECOND,), sandbox_options={"rate_per_key": 30},
    )
    with Stack(config) as running:
        running.provision_pool(expected=4)
        yield running


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_texts_go_through_the_account_of_their_number(stack):
    sandbox = stack.sandbox.client
    owner = {n["msisdn"]: n["account"] for n in sandbox.owned_numbers()}
    assert sorted(owner.values()) == ["sandbox-key", "sandbox-key", SECOND[0], SECOND[0]]

    proxies = []
    for a, b in PAIRS:
        created = stack.api("POST", "/v1/conversations", {
            "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}]})
        assert created.status_code == 202, created.text
        body = stack.wait_for_status(created.json()["id"], "active")
        proxies.append((body["id"], *(p["proxy_number"][1:] for p in body["participants"])))
    for (a, b), (_, proxy_a, _proxy_b) in zip(PAIRS, proxies, strict=True):
        sandbox.wait_for_inbox(b, 1)
        sandbox.send_from_handset(a, proxy_a, f"hello from {a[-1]}")
    for (_a, b), (_, _proxy_a, proxy_b) in zip(PAIRS, proxies, strict=True):
        [_intro, relayed] = sandbox.wait_for_inbox(b, 2, timeout=20)
        assert relayed["from"] == proxy_b

    sent = sandbox.sms_log()
    assert len(sent) == 3 * 3  # two intros and one relay per conversation
    assert all(m["account"] == owner[m["from"]] for m in sent)
    assert {m["account"] for m in sent} == {"sandbox-key", SECOND[0]}

    # every webhook, signed by its number's account, was taken (a 401 would be retried)
    webhooks = _wait(lambda: (w := sandbox.webhooks()) and all(
        x["status"] == "delivered" for x in w) and len(w) == 3 + len(sent) and w,
        what="webhooks delivered")
    assert {w["params"]["api-key"] for w in webhooks} == {"sandbox-key", SECOND[0]}
    for conversation_id, *_ in proxies:
        _wait(lambda cid=conversation_id: all(
            m["status"] == "delivered" for m in stack.api(
                "GET", f"/v1/conversations/{cid}/messages").json()["messages"]
            if m["direction"] == "outbound"), what="receipts recorded")
