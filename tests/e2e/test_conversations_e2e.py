"""Conversations through the real system: sizing rule on a real worker, callbacks, expiry."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest

from devtools.stack import Stack, StackConfig
from tests.e2e.http_server import serving

pytestmark = pytest.mark.e2e

CALLBACK_SECRET = "cb-secret"
HEAVY = "447400100000"


class _Receiver(BaseHTTPRequestHandler):
    """The marketplace's callback endpoint: fails the first call, then records events."""

    events: list[dict] = []
    failures_left = 1

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.failures_left > 0:
            _Receiver.failures_left -= 1
            self.send_response(500)
            self.end_headers()
            return
        mac = hmac.new(CALLBACK_SECRET.encode(),
                       self.headers["X-Smsproxy-Timestamp"].encode() + b"." + body,
                       hashlib.sha256).hexdigest()
        _Receiver.events.append({"valid": self.headers["X-Smsproxy-Signature"] == f"sha256={mac}",
                                 **json.loads(body)})
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
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=3", beat=True,
        # The 200 pairs are created as fast as the test can: no client rate limit here (it is
        # tested in tests/web/test_clients.py).
        extra_env={"SMSPROXY_CALLBACK_SECRET": CALLBACK_SECRET, "SMSPROXY_API_RATE_LIMIT": "none"},
    )
    with Stack(config) as running:
        running.provision_pool(expected=3)
        yield running


def _create(stack, a, b, **extra):
    response = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}], **extra})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_three_numbers_serve_a_heavy_user_and_200_pairs(stack):
    """The sizing rule, end to end: k=3 numbers, one person in 3 conversations, 200 pairs."""
    pairs = [(HEAVY, f"4474001{i:05d}") for i in range(1, 4)]
    pairs += [(f"4474002{i:05d}", f"4474003{i:05d}") for i in range(200)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda pair: _create(stack, *pair), pairs))
    conversations = [stack.wait_for_status(i, "active", timeout=60) for i in ids]
    elapsed = time.monotonic() - started
    print(f"\n203 conversations active on 3 GB numbers in {elapsed:.1f} s")

    numbers = stack.api("GET", "/v1/numbers").json()["numbers"]
    assert len(numbers) == 3
    assert sum(n["live_routes"] for n in numbers) == 2 * len(pairs)
    heavy_proxies = {c["participants"][0]["proxy_number"] for c in conversations[:3]}
    assert len(heavy_proxies) == 3

    # every route resolves to the right counterpart: text through a sample, incl. all heavy ones
    sandbox = stack.sandbox.client
    for index in [0, 1, 2, 3, 50, 100, 150, 202]:
        conversation = conversations[index]
        sender, receiver = conversation["participants"]
        text = f"route check {index}"
        sandbox.send_from_handset(sender["number"][1:], sender["proxy_number"][1:], text)
        # 406 intros go out at the default 30 sends/s, so the relay may overtake an intro
        deadline = time.monotonic() + 30
        while not (got := [m for m in sandbox.inbox(receiver["number"][1:])
                            if m["text"] == text]):
            assert time.monotonic() < deadline, f"{text!r} not relayed"
            time.sleep(0.2)
        assert [m["from"] for m in got] == [receiver["proxy_number"][1:]]


def test_fourth_conversation_for_the_heavy_user_fails_pool_exhausted(stack):
    conversation_id = _create(stack, HEAVY, "447400199999")
    failed = stack.wait_for_status(conversation_id, "failed")
    assert failed["failure_reason"] == "pool_exhausted"
    metrics = stack.api("GET", "/metrics").text
    assert "smsproxy_pool_exhausted_total 1.0" in metrics


def test_invalid_number_fails_naming_the_participant(stack):
    conversation_id = _create(stack, "447400188888", "15555550123")  # US 555 is not assigned
    failed = stack.wait_for_status(conversation_id, "failed")
    assert failed["failure_reason"].startswith("participant 2: invalid number")


def test_a_participant_seen_recently_costs_no_number_insight_call(stack):
    """Counted at the sandbox: the second conversation of a person asks only about the new
    one (SMSPROXY_INSIGHT_CACHE_SECONDS), and both intros of each are sent once."""
    sandbox = stack.sandbox.client
    seen, first_partner, second_partner = "447400177701", "447400177702", "447400177703"
    before = sandbox.stats()["insight_lookups"]
    first = _create(stack, seen, first_partner)
    stack.wait_for_status(first, "active", timeout=30)
    assert sandbox.stats()["insight_lookups"] == before + 2
    second = _create(stack, seen, second_partner)
    stack.wait_for_status(second, "active", timeout=30)
    assert sandbox.stats()["insight_lookups"] == before + 3
    for conversation_id in (first, second):
        stack.wait_for_trail(conversation_id, {"submitted", "delivered"}, 2)
    refs = [s["client_ref"] for s in sandbox.sms_log()]
    for conversation_id in (first, second):
        for index in (0, 1):
            assert refs.count(f"intro-{conversation_id}-{index}") == 1


def test_callbacks_are_signed_retried_and_cover_the_lifecycle(stack, receiver):
    conversation_id = _create(stack, "447400177777", "447400166666", callback_url=receiver,
                              ttl_seconds=60)
    stack.wait_for_status(conversation_id, "active")
    stack.api("DELETE", f"/v1/conversations/{conversation_id}")
    deadline = time.monotonic() + 30
    while len([e for e in _Receiver.events if e["id"].startswith(conversation_id)]) < 2:
        assert time.monotonic() < deadline, _Receiver.events
        time.sleep(0.2)
    events = [e for e in _Receiver.events if e["id"].startswith(conversation_id)]
    assert sorted(e["type"] for e in events) == ["conversation.active", "conversation.closed"]
    assert all(e["valid"] for e in events)
    assert _Receiver.failures_left == 0  # the first attempt failed and was retried


def test_expiry_sweep_ends_conversations_and_frees_routes(stack, receiver):
    conversation_id = _create(stack, "447400155555", "447400144444", ttl_seconds=60,
                              callback_url=receiver)
    active = stack.wait_for_status(conversation_id, "active")
    # Bring the expiry forward in the store rather than wait a minute.
    import redis

    from shared.settings import Settings
    from shared.wiring import Services

    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    svc = Services.from_settings(Settings.from_env({}), client)
    svc.conversation_store.transition(
        conversation_id, lambda c: c.with_status(c.status, expires_at=time.time()))
    expired = stack.wait_for_status(conversation_id, "expired", timeout=40)
    person = active["participants"][0]
    assert svc.routes.find(person["number"][1:], person["proxy_number"][1:]) is None
    assert expired["status"] == "expired"
    deadline = time.monotonic() + 30
    while not any(e["id"] == f"{conversation_id}:expired" for e in _Receiver.events):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_busy_number_insight_and_throttled_sends_are_retried(stack):
    """Sandbox answers NI status 1 / SMS status 1 half the time: the conversation still opens."""
    sandbox = stack.sandbox.client
    # NI and SMS throttled at random (from a generator restarted here, so that what this test
    # meets does not depend on the tests before it), and the first two sends forced to fail
    sandbox.set_faults(throttle_rate=0.5, sms_script=["1", "http500"], seed=1201)
    try:
        conversation_id = _create(stack, "447400133333", "447400122222")
        stack.wait_for_status(conversation_id, "active", timeout=60)
        sandbox.wait_for_inbox("447400133333", 1, timeout=60)
        sandbox.wait_for_inbox("447400122222", 1, timeout=60)
    finally:
        sandbox.set_faults(throttle_rate=0.0, sms_script=[])
    metrics = stack.api("GET", "/metrics").text
    retried = [line for line in metrics.splitlines()
               if line.startswith('smsproxy_outbound_sends_total{outcome="retried"}')]
    assert retried and float(retried[0].split()[-1]) >= 2
