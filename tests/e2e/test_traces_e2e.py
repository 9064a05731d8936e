"""Traces end to end: gunicorn, a Celery worker process, beat and the sandbox, sending OTLP/HTTP
to a tiny local collector. One trace follows a text from the webhook through the queue to the
Vonage call, and no span's name or attribute holds a number or a body."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devtools.stack import Stack, StackConfig
from shared.settings import SignatureMethod
from shared.signatures import sign
from tests.e2e.http_server import serving

pytestmark = pytest.mark.e2e

A = "447400123456"
B = "447400654321"
SECRET = "trace-signature-secret"
TEXT = "Trace me to the north gate"
GET_TEXT = "a get webhook body"
SERVER, CONSUMER, CLIENT, PRODUCER = 2, 5, 3, 4  # OTLP's SpanKind numbers


class _Collector(BaseHTTPRequestHandler):
    """OTLP/HTTP's trace endpoint: protobuf ExportTraceServiceRequest in, 200 out."""

    spans: list[dict] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                service = next(a.value.string_value for a in resource.resource.attributes
                               if a.key == "service.name")
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append({
                            "service": service, "name": span.name, "kind": span.kind,
                            "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: str(a.value) for a in span.attributes},
                            "events": [str(e) for e in span.events],
                            "status": span.status.message,
                        })
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def collector():
    with serving(_Collector) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def stack(tmp_path_factory, collector):
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2", beat=True,
        signature_secret=SECRET, signature_method="sha256",
        extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector,
                   # export within a fraction of a second, not the SDK's 5 s
                   "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def _spans() -> list[dict]:
    with _Collector.lock:
        return list(_Collector.spans)


def _wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        found = predicate(_spans())
        if found:
            return found
        assert time.monotonic() < deadline, f"never exported: {what}"
        time.sleep(0.1)


def _relay_trace(spans: list[dict]) -> dict[str, list[dict]] | None:
    """The trace of an inbound webhook that reached a Vonage send, by trace id."""
    by_trace = defaultdict(list)
    for span in spans:
        by_trace[span["trace"]].append(span)
    for trace in by_trace.values():
        names = {(s["service"], s["kind"], s["name"]) for s in trace}
        sends = [s for s in trace if s["kind"] == CLIENT and any(
            "/sms/json" in v for v in s["attributes"].values())]
        if ("smsproxy-web", SERVER, "POST /webhooks/inbound-sms") in names and sends \
                and ("smsproxy-worker", CONSUMER, "run/smsproxy.relay_inbound") in names:
            return {"spans": trace}
    return None


def test_one_trace_from_the_webhook_through_the_queue_to_vonage(stack):
    sandbox = stack.sandbox.client
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{A}"}, {"number": f"+{B}"}]}).json()
    conversation = stack.wait_for_status(created["id"], "active", timeout=30)
    proxy_a = conversation["participants"][0]["proxy_number"].lstrip("+")
    sandbox.wait_for_inbox(B, 1, timeout=20)
    sandbox.send_from_handset(A, proxy_a, TEXT)
    assert sandbox.wait_for_inbox(B, 2, timeout=20)[-1]["text"] == TEXT

    trace = _wait_for(_relay_trace, "webhook → relay → Vonage in one trace")["spans"]
    by_id = {s["id"]: s for s in trace}
    [webhook] = [s for s in trace if s["name"] == "POST /webhooks/inbound-sms"]
    [run] = [s for s in trace if s["name"] == "run/smsproxy.relay_inbound"]
    # the queue is crossed: the task's parent is the web's publish, under the webhook
    publish = by_id[run["parent"]]
    assert publish["kind"] == PRODUCER and publish["service"] == "smsproxy-web"
    assert publish["name"] == "apply_async/smsproxy.relay_inbound"
    assert publish["parent"] == webhook["id"]
    # and the Vonage call happens inside the task
    send = next(s for s in trace if s["kind"] == CLIENT
                and any("/sms/json" in v for v in s["attributes"].values()))
    assert send["service"] == "smsproxy-worker"
    ancestor = send
    while ancestor["parent"] and ancestor["id"] != run["id"]:
        ancestor = by_id[ancestor["parent"]]
    assert ancestor["id"] == run["id"]
    # the store's commands are spans too, their arguments not recorded
    assert any(s["service"] == "smsproxy-web" and s["name"] == "EVALSHA" for s in trace)


def test_a_get_webhook_and_number_insight_urls_lose_their_query_values(stack):
    params = {"msisdn": A, "to": "447700900999", "messageId": "get-trace-1", "text": GET_TEXT,
              "type": "text", "message-timestamp": "2026-01-01 00:00:00",
              "timestamp": str(int(time.time())), "nonce": "n1"}
    params["sig"] = sign(params, SECRET, SignatureMethod.SHA256)
    response = requests.get(f"{stack.web_url}/webhooks/inbound-sms", params=params, timeout=5)
    assert response.status_code == 200, response.text
    # the webhook's server span, its URL attributes scrubbed
    get = _wait_for(lambda spans: [s for s in spans if s["name"] == "GET /webhooks/inbound-sms"],
                    "the GET webhook's span")[0]
    urls = [v for v in get["attributes"].values() if "inbound-sms" in v]
    assert urls and all("msisdn=…" in v for v in urls if "?" in v)
    # Number Insight's GET carried the number in its query (the create above)
    insight = _wait_for(lambda spans: [s for s in spans if any(
        "/ni/basic/json" in v for v in s["attributes"].values())], "a Number Insight call")
    assert all("number=…" in v for s in insight for v in s["attributes"].values()
               if "/ni/basic/json?" in v)


def test_no_span_holds_a_number_or_a_body(stack):
    """Runs last: every span exported by every process of the run above."""
    # beat's first periodic publish (the stranded-job sweep) comes within seconds of its start
    _wait_for(lambda spans: [s for s in spans if s["service"] == "smsproxy-beat"
                             and s["name"].startswith("apply_async/")], "a span from beat")
    spans = _spans()
    assert {s["service"] for s in spans} >= {"smsproxy-web", "smsproxy-worker", "smsproxy-beat"}
    for span in spans:
        text = repr(span)
        for secret in (A, B, TEXT, "north gate", "north+gate", GET_TEXT, "get+webhook"):
            assert secret not in text, f"{secret!r} in span {span['name']}: {text[:500]}"
