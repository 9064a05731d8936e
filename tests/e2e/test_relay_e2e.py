"""End to end: gunicorn, a Celery worker process, Redis and the sandbox over HTTPS (real SDK)."""

from __future__ import annotations

import re

import pytest

from devtools.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

A = "447400123456"  # handset of the rider
B = "447400654321"  # handset of the driver


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2")
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def test_two_handsets_talk_through_their_proxy_numbers(stack):
    sandbox = stack.sandbox.client
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{A}", "display_name": "Rider"},
                         {"number": f"+{B}", "display_name": "Driver"}],
    })
    assert created.status_code == 202, created.text
    conversation = stack.wait_for_status(created.json()["id"], "active")
    proxy_a = conversation["participants"][0]["proxy_number"].lstrip("+")
    proxy_b = conversation["participants"][1]["proxy_number"].lstrip("+")

    # each side gets an intro from its own proxy number, naming the other side
    [intro_a] = sandbox.wait_for_inbox(A, 1)
    [intro_b] = sandbox.wait_for_inbox(B, 1)
    assert intro_a["from"] == proxy_a and "Driver" in intro_a["text"]
    assert intro_b["from"] == proxy_b and "Rider" in intro_b["text"]

    # A texts its proxy: B receives it from B's proxy, never seeing A's number
    sandbox.send_from_handset(A, proxy_a, "Hi, I'm at the north entrance")
    received = sandbox.wait_for_inbox(B, 2, timeout=20)[-1]
    assert received["from"] == proxy_b
    assert received["text"] == "Hi, I'm at the north entrance"
    assert A not in received["text"]

    # and the reverse
    sandbox.send_from_handset(B, proxy_b, "On my way, 2 minutes")
    back = sandbox.wait_for_inbox(A, 2, timeout=20)[-1]
    assert back["from"] == proxy_a
    assert back["text"] == "On my way, 2 minutes"

    # the audit trail shows both directions with delivery status from the receipts
    trail = _wait_trail_delivered(stack, conversation["id"])
    assert [m["direction"] for m in trail] == ["outbound", "outbound", "inbound", "outbound",
                                               "inbound", "outbound"]
    assert all("text" not in m for m in trail)

    # after close, A's text is not relayed
    assert stack.api("DELETE", f"/v1/conversations/{conversation['id']}").json()["status"] \
        == "closed"
    sandbox.send_from_handset(A, proxy_a, "are you still there?")
    sandbox.wait_until_idle(timeout=20)
    assert all(m["text"] != "are you still there?" for m in sandbox.inbox(B))


def _wait_trail_delivered(stack, conversation_id, timeout=45.0):
    """The trail once every send's receipt is in (receipts are webhooks: under load, or after a
    503, the sandbox's retries back off as Vonage's do)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        trail = stack.api("GET", f"/v1/conversations/{conversation_id}/messages").json()["messages"]
        outbound = [m for m in trail if m["direction"] == "outbound"]
        if len(trail) == 6 and all(m["status"] == "delivered" for m in outbound):
            return trail
        assert time.monotonic() < deadline, [(m["id"], m.get("status")) for m in trail]
        time.sleep(0.2)


def test_logs_carry_no_full_number_or_body(stack):
    """Personal data: every process's log of the run above shows numbers masked, no bodies."""
    for log in stack.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in (A, B, "north entrance", "On my way"):
            assert secret not in text, f"{secret!r} found in {log.name}"
        assert re.search(r"\*\*\*\d{4}", text) or log.name != "worker1.log"
