"""/metrics of a real stack after one conversation and one relayed text: every signal present,
with values that follow from what happened, and the exposition accepted by promtool."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack, StackConfig
from tests.ops.promtool import promtool

pytestmark = pytest.mark.e2e

A, B = "447400223456", "447400754321"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2")
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def _scrape(stack: Stack) -> str:
    response = requests.get(f"{stack.web_url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _wait_for(stack: Stack, ready, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = _samples(_scrape(stack))
        if ready(samples):
            return samples
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_metrics_follow_a_conversation_and_a_relay(stack):
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{A}"}, {"number": f"+{B}"}]})
    assert created.status_code == 202, created.text
    conversation = stack.wait_for_status(created.json()["id"], "active")
    proxy_a = conversation["participants"][0]["proxy_number"].lstrip("+")
    sandbox = stack.sandbox.client
    sandbox.wait_for_inbox(A, 1)
    sandbox.send_from_handset(A, proxy_a, "metrics, please")
    sandbox.wait_for_inbox(B, 2, timeout=20)

    # web writes its webhook timings, and the worker its finished tasks, about once a second
    # (shared/metrics.py, HistogramBuffer)
    samples = _wait_for(
        stack, lambda s: _value(s, "smsproxy_relay_latency_seconds_count") >= 1
        and _value(s, "smsproxy_workers_alive") >= 1
        and _value(s, "smsproxy_webhook_duration_seconds_count", kind="inbound", code="200") >= 1
        and _value(s, "smsproxy_tasks_total", task="relay_inbound", queue="inbound",
                   state="success") >= 1,
        "relay latency, worker heartbeat, the webhook's timing or the finished relay not "
        "recorded")
    assert _value(samples, "smsproxy_store_up") == 1
    assert _value(samples, "smsproxy_webhooks_total", kind="inbound", outcome="accepted") == 1
    assert _value(samples, "smsproxy_webhook_duration_seconds_count",
                  kind="inbound", code="200") >= 1
    assert _value(samples, "smsproxy_conversations_total", outcome="requested") == 1
    assert _value(samples, "smsproxy_conversations_total", outcome="active") == 1
    assert _value(samples, "smsproxy_conversation_activation_seconds_count") == 1
    assert _value(samples, "smsproxy_inbound_relayed_total") == 1
    # two intros and the relay, each one Vonage SMS call
    assert _value(samples, "smsproxy_outbound_sends_total", outcome="sent") == 3
    assert _value(samples, "smsproxy_vonage_request_duration_seconds_count",
                  api="sms", outcome="ok") == 3
    assert _value(samples, "smsproxy_vonage_request_duration_seconds_count",
                  api="number_insight", outcome="ok") == 2
    assert _value(samples, "smsproxy_tasks_total", task="relay_inbound", queue="inbound",
                  state="success") == 1
    assert _value(samples, "smsproxy_pool_free_capacity", country="GB") == 2
    assert _value(samples, "smsproxy_pool_target_numbers", country="GB") == 2
    for queue in ("inbound", "outbound", "conversations", "receipts", "pool"):
        assert ("smsproxy_queue_depth", frozenset({("queue", queue)})) in samples


def test_promtool_accepts_the_exposition(stack):
    result = subprocess.run([promtool(), "check", "metrics"], input=_scrape(stack),  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
