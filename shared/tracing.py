"""Optional OpenTelemetry traces, on when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off (the default), nothing of OpenTelemetry is imported or patched, and the one hook on the hot
path (`inject_trace_context`, for the task messages web and workers build by hand) is an `if`.
On, each process has a tracer provider whose spans go through `ScrubbingProcessor` to the OTLP/HTTP
exporter (which reads its other OTEL_EXPORTER_OTLP_* variables itself), and the Redis and
requests (the Vonage SDK's HTTP client) instrumentations are on; web adds Flask's and workers
Celery's (web/app.py, workers/celery_app.py), which this module cannot import.

What the instrumentations record may hold personal data: a GET webhook's URL carries msisdn, to
and text in its query, Number Insight's URL the number, /v1/participants/<number> a number in
the path, an exception's message whatever it quotes. Every span is scrubbed on its way to the
exporter: query strings lose their values, phone-number-long digit runs are masked as logs
mask them, Redis commands keep only their name (the instrumentation's own `COMMAND ? ?` form).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from shared.redaction import mask_digit_runs, scrub_query_strings
from shared.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Attributes whose whole value is a query string (no `?` to find it by).
_QUERY_KEYS = frozenset({"url.query", "http.query"})
# Ids are kept whole: a task's uuid may hold a long run of digits, and it is no one's number.
_ID_KEY = re.compile(r"(^|[._])(id|message_id|correlation_id)$")
_ENCODED_PLUS = re.compile(r"%2[bB]")

_inject: Callable[[MutableMapping[str, Any]], None] | None = None
_provider: TracerProvider | None = None


def tracing_enabled() -> bool:
    return _provider is not None


def configure_tracing(
    settings: Settings, service: str, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Turn tracing on for this process when the settings ask for it (or an exporter is given,
    in tests); returns the provider, or None when tracing stays off. Idempotent."""
    global _inject, _provider
    if _provider is not None:
        return _provider
    if not settings.otel_endpoint and exporter is None:
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.propagate import inject
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces
    # OTEL_RESOURCE_ATTRIBUTES is merged in by Resource.create
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name or service})
    )
    # duck-typed, so that this module imports nothing of the SDK while tracing is off
    provider.add_span_processor(ScrubbingProcessor(BatchSpanProcessor(exporter)))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    _inject, _provider = inject, provider
    return provider


def redis_span(commands: Sequence[str]) -> AbstractContextManager[object]:
    """A client span for a round trip sent past redis-py's client (shared/script_batch.py),
    named as the Redis instrumentation names its own (the commands' names, space-separated),
    with no arguments; nothing while tracing is off."""
    if _provider is None:
        return nullcontext()
    from opentelemetry.trace import SpanKind

    return _provider.get_tracer(__name__).start_as_current_span(
        " ".join(commands) or "redis", kind=SpanKind.CLIENT,
        attributes={"db.system": "redis", "db.redis.pipeline_length": len(commands)},
    )


def inject_trace_context(task: str, headers: MutableMapping[str, Any]) -> None:
    """Carry the current trace into a task message built by hand (shared/broker_messages.py).

    Celery's instrumentation does this for `send_task` in its before_task_publish handler; the
    web's one-step enqueue and the outbox write messages without `send_task`, so they get the
    same: a PRODUCER span `apply_async/<task>` and its W3C `traceparent` among the message's
    headers, which the worker's instrumentation reads back as the parent of `run/<task>`.
    """
    if _provider is None or _inject is None:
        return
    from opentelemetry import trace

    tracer = trace.get_tracer(__name__, tracer_provider=_provider)
    with tracer.start_as_current_span(f"apply_async/{task}", kind=trace.SpanKind.PRODUCER) as span:
        span.set_attribute("celery.action", "apply_async")
        span.set_attribute("celery.task_name", task)
        _inject(headers)


def scrub_text(key: str, value: str) -> str:
    """A span attribute's (or name's) text with query values and numbers removed."""
    if key in _QUERY_KEYS:
        return scrub_query_strings(f"?{value}")[1:]
    value = scrub_query_strings(value)
    if _ID_KEY.search(key):
        return value
    return mask_digit_runs(_ENCODED_PLUS.sub("+", value))


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            scrubbed[key] = scrub_text(key, value)
        elif isinstance(value, tuple | list):
            scrubbed[key] = tuple(scrub_text(key, v) if isinstance(v, str) else v for v in value)
        else:
            scrubbed[key] = value
    return scrubbed


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """A copy of an ended span with its name, attributes, events and status scrubbed."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    events = [Event(event.name, scrub_attributes(event.attributes), event.timestamp)
              for event in span.events]
    status = span.status
    if status.description:
        status = Status(status.status_code, scrub_text("status", status.description))
    return ReadableSpan(
        name=scrub_text("name", span.name), context=span.context, parent=span.parent,
        resource=span.resource, attributes=scrub_attributes(span.attributes), events=events,
        links=span.links, kind=span.kind, status=status, start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingProcessor:
    """A span processor that hands the next one (the exporting one) scrubbed copies only."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        # the SDK's hook just before a span ends (SpanProcessor's default does nothing)
        self._inner._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(scrubbed(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
