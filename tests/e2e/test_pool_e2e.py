"""Pool maintenance by beat against the sandbox: two schedulers, reconcile, repair, fail over."""

from __future__ import annotations

import time

import pytest

from devtools.stack import Stack, StackConfig
from shared.settings import Settings
from shared.vonage_gateway import VonageGateway

pytestmark = pytest.mark.e2e

A, B = "447400300001", "447400300002"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=3,US=2", beat=True,
        workers=2, extra_env={"SMSPROXY_POOL_MAINTENANCE_SECONDS": "1"},
    )
    with Stack(config) as running:
        running.start_beat("beat2")  # a second scheduler, as if an operator started two
        yield running


def _owned(stack):
    return {n["msisdn"]: n for n in stack.sandbox.client.owned_numbers()}


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_two_beats_buy_each_number_once(stack):
    _wait(lambda: len(_owned(stack)) >= 5, what="pool bought")
    time.sleep(6)  # several more runs from both schedulers
    owned = _owned(stack)
    assert len(owned) == 5, owned
    inbound = f"{stack.web_url}/webhooks/inbound-sms"
    assert all(n.get("moHttpUrl") == inbound for n in owned.values())
    numbers = stack.api("GET", "/v1/numbers").json()["numbers"]
    assert sorted(n["country"] for n in numbers) == ["GB", "GB", "GB", "US", "US"]
    assert all(n["state"] == "active" and n["monthly_cost"] for n in numbers)


def test_drifted_inbound_url_is_repaired_and_foreign_numbers_are_left_alone(stack):
    gateway = VonageGateway(Settings.from_env(stack.env))
    victim = next(iter(_owned(stack).values()))
    gateway.set_inbound_url(victim["country"], victim["msisdn"], "https://elsewhere.example/sms")
    stack.sandbox.client.add_owned([{"country": "GB", "msisdn": "447700900190",
                                     "moHttpUrl": "https://other-app.example/sms"}])
    inbound = f"{stack.web_url}/webhooks/inbound-sms"
    _wait(lambda: _owned(stack)[victim["msisdn"]].get("moHttpUrl") == inbound, what="repair")
    time.sleep(2)
    assert _owned(stack)["447700900190"]["moHttpUrl"] == "https://other-app.example/sms"
    listed = {n["number"] for n in stack.api("GET", "/v1/numbers").json()["numbers"]}
    assert "+447700900190" not in listed


def test_lost_number_moves_live_conversations_and_tells_the_people(stack):
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{A}"}, {"number": f"+{B}"}]}).json()
    conversation = stack.wait_for_status(created["id"], "active")
    lost = conversation["participants"][0]["proxy_number"][1:]
    stack.sandbox.client.wait_for_inbox(A, 1, timeout=20)
    gateway = VonageGateway(Settings.from_env(stack.env))
    gateway.cancel_number("GB", lost)  # the number is gone from the account

    notice = stack.sandbox.client.wait_for_inbox(A, 2, timeout=30)[-1]
    moved = stack.api("GET", f"/v1/conversations/{created['id']}").json()
    new_proxy = moved["participants"][0]["proxy_number"][1:]
    assert new_proxy != lost and notice["from"] == new_proxy
    assert f"+{new_proxy}" in notice["text"]
    stack.sandbox.client.send_from_handset(A, new_proxy, "still there?")
    _wait(lambda: any(m["text"] == "still there?" for m in stack.sandbox.client.inbox(B)),
          what="relay on the new number")
    # and the pool is topped up again to its target
    _wait(lambda: sum(1 for n in stack.api("GET", "/v1/numbers").json()["numbers"]
                      if n["country"] == "GB") == 3, what="top-up")


def test_operator_cli_against_the_sandbox(stack):
    import subprocess
    import sys

    from devtools.stack import ROOT

    def flask(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "web.wsgi", "pool", *args],
                              cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)

    synced = flask("sync")
    assert synced.returncode == 0, synced.stderr
    assert "bought: 0" in synced.stdout  # beat already holds the targets
    status = flask("status")
    assert status.returncode == 0, status.stderr
    assert "GB: 3 allocatable, target 3" in status.stdout
