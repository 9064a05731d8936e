"""End to end: gunicorn, a Celery worker process, Redis and the sandbox over HTTPS (real SDK)."""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack

import pytest
import requests

from devtools.stack import Stack, StackConfig
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.rabbitmq import private_vhost

pytestmark = pytest.mark.e2e

A = "447400123456"  # handset of the rider
B = "447400654321"  # handset of the driver


SECRET = "e2e-signature-secret"
GET_TEXT = "meet me at gate seven"


# Both log formats: the personal-data scan below runs over each. gunicorn's access log is on
# (it is off by default): a GET webhook's query string must not reach it. The JSON run has beat
# too, so that every kind of process is scanned. Both brokers: the relay end to end runs once
# more with RabbitMQ as the broker (text logs; skipped, saying why, without a RabbitMQ).
@pytest.fixture(scope="module", params=["text", "json", "rabbitmq"])
def stack(request, tmp_path_factory):
    with ExitStack() as scope:
        log_format = "json" if request.param == "json" else "text"
        extra_env = {"SMSPROXY_LOG_FORMAT": log_format,
                     "GUNICORN_CMD_ARGS": "--access-logfile -"}
        if request.param == "rabbitmq":
            extra_env["CELERY_BROKER_URL"] = scope.enter_context(private_vhost("e2e-relay"))
            # the multi-part wait is a countdown: short, so that the test of countdowns is
            extra_env["SMSPROXY_CONCAT_TIMEOUT_SECONDS"] = "3"
        config = StackConfig(
            state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2",
            beat=log_format == "json", signature_secret=SECRET, signature_method="sha256",
            extra_env=extra_env,
        )
        running = scope.enter_context(Stack(config))
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


def test_countdowns_are_held_by_the_worker_and_run_once(stack):
    """On RabbitMQ the worker holds a countdown's message unacknowledged until it is due (no
    native delayed delivery: shared/amqp_broker.py): a send Vonage throttles and then fails
    is retried after its backoff, once; a part that never comes is flushed after the wait."""
    if "CELERY_BROKER_URL" not in stack.env:
        pytest.skip("Redis: tests/e2e/test_relay_faults_e2e.py covers countdowns there")
    c, d = "447400777001", "447400777002"
    created = stack.api("POST", "/v1/conversations",
                        {"participants": [{"number": f"+{c}"}, {"number": f"+{d}"}]})
    assert created.status_code == 202, created.text
    conversation = stack.wait_for_status(created.json()["id"], "active")
    proxy_c = conversation["participants"][0]["proxy_number"].lstrip("+")
    sandbox = stack.sandbox.client
    sandbox.wait_for_inbox(d, 1)  # the intro
    sandbox.set_faults(sms_script=["1", "http500"])  # throttled, then a 500, then accepted
    try:
        sandbox.send_from_handset(c, proxy_c, "retried after a countdown")
        sandbox.wait_for_inbox(d, 2, timeout=60)
    finally:
        sandbox.set_faults(sms_script=[])
    params = {"msisdn": c, "to": proxy_c, "messageId": "rmq-lost-part", "text": "first half, ",
              "concat": "true", "concat-ref": "91", "concat-total": "2", "concat-part": "1",
              "timestamp": str(int(time.time())), "nonce": "n-rmq"}
    params["sig"] = sign(params, SECRET, SignatureMethod.SHA256)
    assert requests.post(f"{stack.web_url}/webhooks/inbound-sms", data=params,
                         timeout=5).status_code == 200
    assert sandbox.wait_for_inbox(d, 3, timeout=40)[-1]["text"] == "first half, […]"
    sandbox.wait_until_idle(timeout=20)
    texts = [m["text"] for m in sandbox.inbox(d)]
    assert texts.count("retried after a countdown") == 1, texts
    assert texts.count("first half, […]") == 1, texts


def test_a_get_webhook_is_taken(stack):
    """Vonage's GET webhooks carry msisdn, to and text in the query string (the access log is
    on in this module); this one reaches a number with no route to A, so it is not relayed."""
    params = {"msisdn": A, "to": "447700900999", "messageId": "get-webhook-1", "text": GET_TEXT,
              "type": "text", "message-timestamp": "2026-01-01 00:00:00",
              "timestamp": str(int(time.time())), "nonce": "n1"}
    params["sig"] = sign(params, SECRET, SignatureMethod.SHA256)
    response = requests.get(f"{stack.web_url}/webhooks/inbound-sms", params=params, timeout=5)
    assert response.status_code == 200, response.text
    stack.sandbox.client.wait_until_idle(timeout=20)
    _wait_for_log(stack, "web.log", "GET /webhooks/inbound-sms?")


def _wait_for_log(stack, name, needle, timeout=10.0):
    deadline = time.monotonic() + timeout
    while needle not in (stack.logs / name).read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{needle!r} never logged in {name}"
        time.sleep(0.1)


def test_logs_carry_no_full_number_or_body(stack):
    """Personal data: every process's log of the run above shows numbers masked, no bodies."""
    logs = sorted(stack.logs.glob("*.log"))
    assert {log.name for log in logs} >= {"web.log", "worker1.log"}
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (A, B, "north entrance", "On my way", GET_TEXT, "gate+seven"):
            assert secret not in text, f"{secret!r} found in {log.name}"
        assert re.search(r"\*\*\*\d{4}", text) or log.name != "worker1.log"
    # the access log's line of the GET webhook, its values replaced
    assert "inbound-sms?msisdn=…" in (stack.logs / "web.log").read_text()


def test_the_worker_logs_a_line_per_send_not_per_task(stack):
    """At INFO, Celery's `received` and `succeeded in` lines for every task are off (the
    consumer's thread wrote one of them for every task); our own line per send stays."""
    text = (stack.logs / "worker1.log").read_text(errors="replace")
    assert "sent " in text
    assert "] received" not in text
    assert "] succeeded in" not in text


def test_json_logs_are_json_lines_with_the_ids(stack):
    """SMSPROXY_LOG_FORMAT=json: every line of every process is one JSON object; the workers'
    lines name their task, and lines about a message or conversation name it."""
    if stack.env["SMSPROXY_LOG_FORMAT"] != "json":
        pytest.skip("the text run")
    lines: dict[str, list[dict]] = {}
    for log in sorted(stack.logs.glob("*.log")):
        lines[log.name] = []
        for number, line in enumerate(log.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{log.name}:{number} is not JSON: {line[:200]!r}") from None
            assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= set(entry)
            lines[log.name].append(entry)
    assert set(lines) == {"web.log", "worker1.log", "beat.log"}
    assert any(e["logger"] == "gunicorn.error" for e in lines["web.log"])
    assert any(e["logger"] == "gunicorn.access" for e in lines["web.log"])
    assert any(e["logger"].startswith("celery.beat") for e in lines["beat.log"])
    sent = [e for e in lines["worker1.log"] if e["message"].startswith("sent ")]
    assert sent and all(e["task_name"] and e["task_id"] and e["message_id"]
                        and e["conversation_id"] for e in sent)
    assert any(e.get("task_name") == "smsproxy.relay_inbound" and e.get("message_id")
               for e in lines["worker1.log"])
