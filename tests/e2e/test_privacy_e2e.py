"""Privacy end to end: gunicorn, a Celery worker process, Redis and the sandbox over HTTPS.

Contact details are masked in what the other side receives; STOP, START and HELP are handled
from the number they were texted to, and never relayed.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

import pytest

from devtools.stack import Stack, StackConfig
from tests.e2e.http_server import serving

pytestmark = pytest.mark.e2e

RIDER, DRIVER = "447400123111", "447400654222"


class _Receiver(BaseHTTPRequestHandler):
    """The marketplace's callback endpoint: records every event."""

    events: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.events.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    with serving(_Receiver) as base_url:
        yield f"{base_url}/hook"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2",
                         extra_env={"SMSPROXY_CALLBACK_SECRET": "cb-secret"})
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


def _trail(stack, conversation_id):
    return stack.api("GET", f"/v1/conversations/{conversation_id}/messages").json()["messages"]


def _inbound(stack, conversation_id, count):
    """The trail's inbound entries once there are `count` of them."""
    def enough():
        found = [m for m in _trail(stack, conversation_id) if m["direction"] == "inbound"]
        return found if len(found) >= count else None

    return _wait_for(enough, f"{count} inbound entries in the trail")


def _texts(sandbox, handset):
    return [m["text"] for m in sandbox.inbox(handset)]


def test_stop_start_and_help_from_a_handset(stack, receiver):
    sandbox = stack.sandbox.client
    rider, driver = "447400123555", "447400654666"
    conversation, (proxy_rider, proxy_driver) = _start(
        stack, rider, driver, callback_url=receiver)
    cid = conversation["id"]
    settings_reply = "You will no longer receive texts from this number."

    # the driver texts STOP: one confirmation from the number they texted; the rider is told
    sandbox.send_from_handset(driver, proxy_driver, "STOP")
    confirmation = sandbox.wait_for_inbox(driver, 2, timeout=20)[-1]
    assert confirmation["from"] == proxy_driver
    assert confirmation["text"].startswith(settings_reply)
    notice = sandbox.wait_for_inbox(rider, 2, timeout=20)[-1]
    assert notice["from"] == proxy_rider and "opted out" in notice["text"]
    assert "STOP" not in _texts(sandbox, rider)
    got = stack.api("GET", f"/v1/conversations/{cid}").json()
    assert [p["opted_out"] for p in got["participants"]] == [False, True]
    (stop,) = _inbound(stack, cid, 1)
    assert (stop["participant_state"], stop["not_relayed"]) == ("opted_out", "keyword")
    event = _wait_for(lambda: [e for e in _Receiver.events
                               if e["type"] == "participant.opted_out"], "opted_out event")[0]
    assert event["participant"]["number"] == f"+{driver}"
    assert event["conversation"]["id"] == cid

    # the rider's texts no longer reach the driver; the rider is not told a second time
    sandbox.send_from_handset(rider, proxy_rider, "hello? are you coming?")
    sandbox.send_from_handset(rider, proxy_rider, "hello??")
    entries = _inbound(stack, cid, 3)
    assert [m.get("not_relayed") for m in entries[1:]] == ["recipient_opted_out"] * 2
    assert not any(m.get("kind") == "relay" for m in _trail(stack, cid))
    assert len(sandbox.inbox(driver)) == 2 and len(sandbox.inbox(rider)) == 2

    # HELP is answered, never relayed
    sandbox.send_from_handset(rider, proxy_rider, "help")
    help_reply = sandbox.wait_for_inbox(rider, 3, timeout=20)[-1]
    assert help_reply["from"] == proxy_rider and "STOP" in help_reply["text"]

    # START opts the driver back in, confirmed; the rider's texts reach them again
    sandbox.send_from_handset(driver, proxy_driver, "Start")
    assert "again" in sandbox.wait_for_inbox(driver, 3, timeout=20)[-1]["text"]
    _wait_for(lambda: [e for e in _Receiver.events if e["type"] == "participant.opted_in"],
              "opted_in event")
    sandbox.send_from_handset(rider, proxy_rider, "welcome back")
    assert sandbox.wait_for_inbox(driver, 4, timeout=20)[-1]["text"] == "welcome back"
    assert [p["opted_out"] for p in
            stack.api("GET", f"/v1/conversations/{cid}").json()["participants"]] == [False, False]


def test_after_stop_a_new_conversation_gives_the_person_another_number(stack):
    sandbox = stack.sandbox.client
    person, first, second = "447400123777", "447400654888", "447400654999"
    conversation, (proxy, _) = _start(stack, person, first)
    sandbox.send_from_handset(person, proxy, "unsubscribe")
    sandbox.wait_for_inbox(person, 2, timeout=20)  # the confirmation
    stack.api("DELETE", f"/v1/conversations/{conversation['id']}")
    _, (new_proxy, _) = _start(stack, person, second)
    assert new_proxy != proxy


def test_logs_carry_no_full_number_nor_what_was_masked(stack):
    numbers = (RIDER, DRIVER, "447400123555", "447400654666", "447400123777")
    for log in stack.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in (*numbers, "7400 111111", "rider@example.com", "are you coming"):
            assert secret not in text, f"{secret!r} found in {log.name}"
