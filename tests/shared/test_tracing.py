"""Tracing pieces in process, on a provider of the test's own (the global one stays unset, so no
other test is traced): scrubbing before export, and the trace context in hand-built messages."""

from __future__ import annotations

import json

import pytest
from celery import Celery
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.broker_messages import BrokerMessages
from shared.jobs import TaskName
from shared.settings import Settings, SettingsError

NUMBER = "447700900001"
BODY = "see you at the north gate"


@pytest.fixture
def exported(monkeypatch):
    """A provider whose spans go through ScrubbingProcessor to memory, as tracing's would."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(tracing.ScrubbingProcessor(SimpleSpanProcessor(exporter)))
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_inject", inject)
    yield provider, exporter
    provider.shutdown()


def test_tracing_is_off_without_an_endpoint():
    assert tracing.configure_tracing(Settings.from_env({}), "test") is None
    assert not tracing.tracing_enabled()
    headers: dict[str, str] = {}
    tracing.inject_trace_context("t", headers)
    assert headers == {}


def test_an_endpoint_must_be_a_url():
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def _app() -> Celery:
    celery = Celery("test", broker="redis://127.0.0.1:9/0", set_as_current=False)
    celery.conf.update(task_serializer="json")
    return celery


def test_messages_built_off_carry_no_trace_header():
    message = BrokerMessages(_app()).build(TaskName.RELAY_INBOUND, {"msisdn": NUMBER})
    assert "traceparent" not in json.loads(message.body)["headers"]


def test_a_message_built_in_a_span_carries_its_trace(exported):
    provider, exporter = exported
    with provider.get_tracer("test").start_as_current_span("POST /webhooks/inbound-sms") as web:
        message = BrokerMessages(_app()).build(TaskName.RELAY_INBOUND, {"msisdn": NUMBER})
    headers = json.loads(message.body)["headers"]
    [publish] = [s for s in exporter.get_finished_spans() if s.name.startswith("apply_async/")]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert publish.parent.span_id == web.get_span_context().span_id
    trace_id = f"{web.get_span_context().trace_id:032x}"
    span_id = f"{publish.context.span_id:016x}"
    assert headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


def test_exported_spans_hold_no_number_or_body(exported):
    provider, exporter = exported
    tracer = provider.get_tracer("test")
    query = f"msisdn={NUMBER}&to=447700900002&text=see+you+at+the+north+gate"
    with tracer.start_as_current_span(f"GET /v1/participants/+{NUMBER}") as span:
        span.set_attribute("http.url", f"http://proxy/webhooks/inbound-sms?{query}")
        span.set_attribute("http.target", f"/v1/participants/%2B{NUMBER}")
        span.set_attribute("url.query", query)
        span.set_attribute("messaging.message_id", "12345678-1234-1234-1234-123456789012")
        span.set_attribute("http.status_code", 200)
        span.record_exception(ValueError(f"bad number {NUMBER}"))
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"for +{NUMBER}"))
    [done] = exporter.get_finished_spans()
    text = repr((done.name, dict(done.attributes), [dict(e.attributes) for e in done.events],
                 done.status.description))
    assert NUMBER not in text and "north" not in text and "900002" not in text
    assert done.attributes["http.url"] == "http://proxy/webhooks/inbound-sms?msisdn=…&to=…&text=…"
    assert done.attributes["http.target"] == "/v1/participants/***0001"
    assert done.attributes["url.query"] == "msisdn=…&to=…&text=…"
    assert done.name == "GET /v1/participants/***0001"
    # ids and numbers that are not phone numbers stay as they were
    assert done.attributes["messaging.message_id"] == "12345678-1234-1234-1234-123456789012"
    assert done.attributes["http.status_code"] == 200
    assert done.context.trace_id and done.status.status_code is trace.StatusCode.ERROR
