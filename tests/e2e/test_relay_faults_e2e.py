"""The message path under what Vonage and production throw at it, through real processes:
md5hash-signed webhooks, triplicate and out-of-order multi-part delivery, a part that never comes,
throttling and 5xx at the provider, strangers, and the shared rate limit across 4 workers."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from devtools.stack import Stack, StackConfig
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.e2e.http_server import serving

pytestmark = pytest.mark.e2e

RATE, BURST = 30, 10
# the most that the time from token to arrival at the sandbox may vary within one run
TRANSIT_SPREAD = 0.2
SECRET = "md5-secret"
OOS_REPLY = "This conversation has ended. Contact us through the app."


class _Events(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        _Events.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def events_url():
    with serving(_Events) as base_url:
        yield f"{base_url}/events"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, events_url):
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=3",
        signature_secret=SECRET, signature_method="md5hash",
        workers=4, worker_args=("--concurrency", "8"),
        extra_env={
            "SMSPROXY_SEND_RATE_PER_SECOND": str(RATE),
            "SMSPROXY_SEND_BURST": str(BURST),
            # 30 texts per conversation at once: the shared limit is tested, not the
            # per-conversation caps
            "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
            "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "3",
            "SMSPROXY_OUT_OF_SESSION_REPLY": OOS_REPLY,
            "SMSPROXY_CALLBACK_SECRET": "cb",
            "SMSPROXY_OUT_OF_SESSION_CALLBACK_URL": events_url,
        },
    )
    with Stack(config) as running:
        running.provision_pool(expected=3)
        yield running


def _conversation(stack, a, b):
    created = stack.api("POST", "/v1/conversations",
                        {"participants": [{"number": f"+{a}"}, {"number": f"+{b}"}]}).json()
    body = stack.wait_for_status(created["id"], "active", timeout=60)
    stack.sandbox.client.wait_for_inbox(a, 1, timeout=30)
    stack.sandbox.client.wait_for_inbox(b, 1, timeout=30)
    return body, body["participants"][0]["proxy_number"][1:], body["participants"][1][
        "proxy_number"][1:]


def _settle(stack, seconds=1.5):
    stack.sandbox.client.wait_until_idle(timeout=30)
    time.sleep(seconds)  # let any (wrong) extra send surface before counting


def test_long_message_in_parts_out_of_order_three_times_arrives_once(stack):
    a, b = "447400200001", "447400200002"
    _, proxy_a, proxy_b = _conversation(stack, a, b)
    text = "Parcel update: " + " ".join(f"word{i}" for i in range(60))  # > 3 SMS parts
    ids = stack.sandbox.client.send_from_handset(a, proxy_a, text, shuffle_parts=True,
                                                 duplicates=3)
    assert len(ids) >= 3
    inbox = stack.sandbox.client.wait_for_inbox(b, 2, timeout=30)
    _settle(stack)
    inbox = stack.sandbox.client.inbox(b)
    relayed = [m for m in inbox if m["text"].startswith("Parcel update")]
    assert len(relayed) == 1
    assert relayed[0]["text"] == text and relayed[0]["from"] == proxy_b


def test_part_that_never_comes_is_marked_after_the_timeout(stack):
    a, b = "447400200011", "447400200012"
    _, proxy_a, _ = _conversation(stack, a, b)
    params = {"msisdn": a, "to": proxy_a, "messageId": "lost-1", "text": "first half, ",
              "concat": "true", "concat-ref": "77", "concat-total": "2", "concat-part": "1",
              "timestamp": str(int(time.time())), "nonce": "n1"}
    params["sig"] = sign(params, SECRET, SignatureMethod.MD5HASH)
    assert requests.post(f"{stack.web_url}/webhooks/inbound-sms", data=params,
                         timeout=5).status_code == 200
    received = stack.sandbox.client.wait_for_inbox(b, 2, timeout=20)[-1]
    assert received["text"] == "first half, […]"


def test_unsigned_or_wrongly_signed_webhooks_are_refused(stack):
    params = {"msisdn": "447400200021", "to": "447700900100", "messageId": "forged",
              "text": "hi", "timestamp": str(int(time.time())), "nonce": "n"}
    params["sig"] = sign(params, "not-the-secret", SignatureMethod.MD5HASH)
    response = requests.post(f"{stack.web_url}/webhooks/inbound-sms", data=params, timeout=5)
    assert response.status_code == 401
    assert 'smsproxy_webhooks_total{kind="inbound",outcome="unauthenticated"}' in stack.api(
        "GET", "/metrics").text


def test_throttling_and_5xx_at_vonage_are_retried_exactly_once_each(stack):
    a, b = "447400200031", "447400200032"
    conversation, proxy_a, _ = _conversation(stack, a, b)
    stack.sandbox.client.set_faults(sms_script=["1", "http500", "5", "http429", "10"])
    try:
        for i in range(5):
            stack.sandbox.client.send_from_handset(a, proxy_a, f"retry me {i}")
        inbox = stack.sandbox.client.wait_for_inbox(b, 6, timeout=90)
    finally:
        stack.sandbox.client.set_faults(sms_script=[])
    _settle(stack)
    texts = Counter(m["text"] for m in stack.sandbox.client.inbox(b))
    assert all(texts[f"retry me {i}"] == 1 for i in range(5)), texts
    trail = stack.api("GET", f"/v1/conversations/{conversation['id']}/messages").json()
    relays = [m for m in trail["messages"] if m.get("kind") == "relay"]
    assert sum(m["attempts"] for m in relays) == 5 + 5
    assert len(inbox) >= 6


def test_permanent_failure_is_recorded_with_code_and_not_retried(stack):
    a, b = "447400200041", "447400200042"
    conversation, proxy_a, _ = _conversation(stack, a, b)
    stack.sandbox.client.set_faults(sms_script=["7"])  # number barred
    try:
        stack.sandbox.client.send_from_handset(a, proxy_a, "to a barred number")
        deadline = time.monotonic() + 20
        while True:
            trail = stack.api("GET", f"/v1/conversations/{conversation['id']}/messages").json()
            relays = [m for m in trail["messages"] if m.get("kind") == "relay"]
            if relays and relays[-1]["status"] == "failed":
                break
            assert time.monotonic() < deadline, trail
            time.sleep(0.2)
    finally:
        stack.sandbox.client.set_faults(sms_script=[])
    assert relays[-1]["error_code"] == "7" and relays[-1]["attempts"] == 1


def test_stranger_gets_the_reply_and_the_marketplace_an_event_but_nothing_is_relayed(stack):
    stranger = "447400299999"
    stack.sandbox.client.send_from_handset(stranger, "447700900100", "who is this?")
    [reply] = stack.sandbox.client.wait_for_inbox(stranger, 1, timeout=20)
    assert reply["text"] == OOS_REPLY and reply["from"] == "447700900100"
    deadline = time.monotonic() + 20
    while not any(e["type"] == "message.out_of_session" for e in _Events.received):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    event = next(e for e in _Events.received if e["type"] == "message.out_of_session")
    assert event["from"] == f"+{stranger}" and "text" not in event
    assert not any(m["text"] == "who is this?" for m in stack.sandbox.client.sms_log())


def test_shared_rate_limit_holds_across_four_workers(stack):
    """300 messages through 4 worker processes: no one-second window above rate + burst."""
    sandbox = stack.sandbox.client
    conversations = [_conversation(stack, f"4474003{i:05d}", f"4474004{i:05d}")
                     for i in range(10)]
    start = len(sandbox.sms_log())
    for n in range(30):
        for sender, (_, proxy_a, _) in enumerate(conversations):
            sandbox.send_from_handset(f"4474003{sender:05d}", proxy_a, f"msg {n}")
    deadline = time.monotonic() + 90
    while len(sandbox.sms_log()) - start < 300:
        assert time.monotonic() < deadline, len(sandbox.sms_log()) - start
        time.sleep(0.5)
    sends = sandbox.sms_log()[start:]
    times = sorted(datetime.fromisoformat(s["sent_at"]).timestamp() for s in sends)
    worst = max(sum(1 for t in times[i:] if t < times[i] + 1.0) for i in range(len(times)))
    span = times[-1] - times[0]
    print(f"\n300 sends over {span:.1f} s ({300 / span:.1f}/s); busiest 1-s window: {worst}")
    # The bucket admits at most BURST + RATE sends (+1 for a token's fraction) in any second, at
    # the instant each takes its token. The sandbox stamps a send when it arrives: after the
    # claim's round trip, the SDK, and the thread's turn at a GIL that 32 threads share, with 4
    # workers, web and the sandbox on 2 loaded cores. An arrival window therefore holds what was
    # admitted over 1 s plus the spread of those transit times, allowed for here up to
    # TRANSIT_SPREAD. The steady rate is held to the bucket's exact figure over the whole run:
    # after the burst, 300 sends cannot arrive faster than one per token.
    assert worst <= RATE + BURST + 1 + math.ceil(RATE * TRANSIT_SPREAD)
    assert span >= (300 - BURST) / RATE - TRANSIT_SPREAD
    assert len(sends) == 300
    assert Counter((s["to"], s["text"]) for s in sends).most_common(1)[0][1] == 1


def test_logs_of_the_whole_run_carry_no_full_number_or_body(stack):
    """Runs last in this module: every process's log shows numbers masked and no bodies."""
    secrets = ["447400200001", "447400200031", "447400299999", "4474003", "Parcel update",
               "retry me", "who is this?", "first half", "msg 29"]
    for log in stack.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {log.name}"
