"""Privacy end to end: gunicorn, a Celery worker process, Redis and the sandbox over HTTPS.

Contact details are masked in what the other side receives; STOP, START and HELP are handled
from the number they were texted to, and never relayed.
"""

from __future__ import annotations

import time

import pytest

from devtools.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

RIDER, DRIVER = "447400123111", "447400654222"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2")
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def _start(stack, a, b, **extra):
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}], **extra})
    assert created.status_code == 202, created.text
    conversation = stack.wait_for_status(created.json()["id"], "active")
    proxies = [p["proxy_number"].lstrip("+") for p in conversation["participants"]]
    stack.sandbox.client.wait_for_inbox(a, 1)  # the intros
    stack.sandbox.client.wait_for_inbox(b, 1)
    return conversation, proxies


def _wait_for(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_numbers_and_addresses_reach_the_other_side_masked(stack):
    sandbox = stack.sandbox.client
    conversation, (proxy_rider, proxy_driver) = _start(stack, RIDER, DRIVER)
    sandbox.send_from_handset(RIDER, proxy_rider,
                              "call me on +44 7400 111111 instead, or rider@example.com")
    received = sandbox.wait_for_inbox(DRIVER, 2, timeout=20)[-1]
    assert received["from"] == proxy_driver
    assert received["text"] == "call me on [hidden] instead, or [hidden]"

    trail = _wait_for(
        lambda: [m for m in stack.api(
            "GET", f"/v1/conversations/{conversation['id']}/messages").json()["messages"]
            if m["direction"] == "inbound"],
        "the inbound message in the trail")
    assert trail[0]["masked"] == 2 and "text" not in trail[0]
    assert "smsproxy_inbound_masked_total 2.0" in stack.api("GET", "/metrics").text


def test_a_conversation_created_without_masking_relays_verbatim(stack):
    sandbox = stack.sandbox.client
    a, b = "447400123333", "447400654444"
    conversation, (proxy_a, _) = _start(stack, a, b, mask=[])
    assert conversation["mask"] == []
    sandbox.send_from_handset(a, proxy_a, "my number is 07911 123456")
    assert sandbox.wait_for_inbox(b, 2, timeout=20)[-1]["text"] == "my number is 07911 123456"
