"""Counters and histograms shared by every process and host, kept in one Redis hash and
exported by web/ at /metrics in Prometheus's naming: a family name with `_total` or a unit,
and what varies (a kind, an outcome, a reason, a country) as labels.

Why one Redis hash rather than per-process metrics (prometheus_client's multiprocess mode):
workers are many short-lived processes on many hosts, most with no HTTP listener to scrape; the
hash is cluster-wide truth that survives restarts and deploys, one scrape of any web instance
reads all of it, and a write is one HINCRBY (pipelined with the writes around it where there
are some). The price is that an event Redis cannot record (Redis down) is not counted: /metrics
then says so with `smsproxy_store_up 0` (docs/operations.md).

Each hash field is one series, spelled as in the exposition format:
`smsproxy_webhooks_total{kind="inbound",outcome="accepted"}`. A histogram keeps one field per
bucket (not cumulative: one HINCRBY per observation), its `_sum` and its `_count`.

The dotted names of the first counters (`Counters.incr("smsproxy.outbound.sent")`) still work:
LEGACY maps each to its family and labels, and a dotted name it does not know is exported as
`smsproxy_<dotted_with_underscores>_total`, so code written in the old style keeps counting
until it is converted.
"""

from __future__ import annotations

import atexit
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from shared.keys import Keys

log = logging.getLogger(__name__)

# How often a process writes the observations it buffered (HistogramBuffer).
FLUSH_SECONDS = 1.0


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


# Buckets in seconds. A webhook's handling is a Redis round trip or two; a relay's latency
# includes the queue, the rate limit and a Vonage round trip (100-300 ms); an activation
# includes Number Insight and possibly buying a number.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family stored in the hash: its name, help, labels and kind."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    kind: Kind = Kind.COUNTER
    buckets: tuple[float, ...] = ()


def _counter(name: str, help_text: str, *labels: str) -> Family:
    return Family(name, help_text, labels)


def _histogram(name: str, help_text: str, buckets: tuple[float, ...], *labels: str) -> Family:
    return Family(name, help_text, labels, Kind.HISTOGRAM, buckets)


WEBHOOKS = "smsproxy_webhooks_total"
WEBHOOK_DURATION = "smsproxy_webhook_duration_seconds"
RELAY_LATENCY = "smsproxy_relay_latency_seconds"
VONAGE_DURATION = "smsproxy_vonage_request_duration_seconds"
ACTIVATION = "smsproxy_conversation_activation_seconds"
TASKS = "smsproxy_tasks_total"
SENDS = "smsproxy_outbound_sends_total"
WAITS = "smsproxy_outbound_waits_total"

FAMILIES: dict[str, Family] = {f.name: f for f in (
    _counter(WEBHOOKS, "Vonage webhooks judged, by kind (inbound, receipt) and outcome "
             "(accepted, duplicate, unauthenticated)", "kind", "outcome"),
    _counter("smsproxy_inbound_relayed_total", "inbound texts relayed to the other participant"),
    _counter("smsproxy_inbound_dropped_total", "inbound texts not relayed, by reason",
             "reason"),
    _counter("smsproxy_inbound_multipart_total",
             "multi-part texts relayed incomplete (timeout) or parts arriving late", "outcome"),
    _counter("smsproxy_outbound_sends_total", "send attempts by outcome (sent, retried, "
             "failed, expired)", "outcome"),
    _counter("smsproxy_outbound_waits_total", "sends put off without an attempt, by reason "
             "(rate_limit, in_doubt, unreplicated)", "reason"),
    _counter("smsproxy_conversations_total", "conversation lifecycle events by outcome "
             "(requested, active, failed, closed, expired)", "outcome"),
    _counter("smsproxy_pool_exhausted_total", "creates failed for want of a free number"),
    _counter("smsproxy_insight_cache_hits_total", "Number Insight answers served from cache"),
    _counter("smsproxy_pool_maintenance_failures_total", "pool maintenance runs stopped by "
             "a Vonage failure"),
    _counter("smsproxy_pool_credentials_refused_total", "pool maintenance runs refused by "
             "Vonage (HTTP 401/403)"),
    _counter("smsproxy_pool_numbers_bought_total", "numbers bought"),
    _counter("smsproxy_pool_numbers_lost_total", "numbers the account lost behind our back"),
    _counter("smsproxy_pool_numbers_cancelled_total", "drained numbers given back"),
    _counter("smsproxy_pool_rerouted_total", "conversations moved off a lost number"),
    _counter("smsproxy_pool_conversations_lost_total", "conversations ended with a lost number"),
    _counter("smsproxy_pool_shortfall_total", "numbers wanted but not bought"),
    _counter("smsproxy_limit_reached_total", "times a spending or sending limit stopped "
             "something, by limit (pool_budget, daily_sends)", "limit"),
    _counter("smsproxy_callbacks_total", "marketplace callbacks by outcome (delivered, retried, "
             "dropped, refused)", "outcome"),
    _counter("smsproxy_receipts_unmatched_total", "delivery receipts matching no send"),
    _counter("smsproxy_inbound_masked_total", "contact details masked in relayed texts"),
    _counter("smsproxy_inbound_truncated_total", "relays cut to SMSPROXY_MAX_RELAY_PARTS"),
    _counter("smsproxy_replies_suppressed_total", "automatic replies not sent, by reason "
             "(repeat, country_not_served, costly_number, daily_limit)", "reason"),
    _counter("smsproxy_participant_changes_total", "participants' opt-out state changes by "
             "state (opted_out, opted_in)", "state"),
    _counter("smsproxy_participants_erased_total", "erasure requests carried out"),
    _counter("smsproxy_blocked_numbers_added_total", "numbers blocked"),
    _counter("smsproxy_console_actions_total", "operations console actions by action "
             "(sign_in, sign_out, close, run_maintenance, drain, block, unblock, sign_in_failed)",
             "action"),
    _counter(TASKS, "Celery tasks finished, by task, queue and state (success, retry, failure)",
             "task", "queue", "state"),
    _histogram(WEBHOOK_DURATION, "time web took to answer a Vonage webhook, by kind and status "
               "code", FAST_BUCKETS, "kind", "code"),
    _histogram(RELAY_LATENCY, "inbound webhook received to the relay accepted by Vonage: the "
               "latency a person feels", LATENCY_BUCKETS),
    _histogram(VONAGE_DURATION, "Vonage API calls by api and outcome (ok, error)", CALL_BUCKETS,
               "api", "outcome"),
    _histogram(ACTIVATION, "conversation requested to active", LATENCY_BUCKETS),
)}

# The dotted names of the first counters: (family, labels) of each.
LEGACY: dict[str, tuple[str, dict[str, str]]] = {
    "smsproxy.inbound.relayed": ("smsproxy_inbound_relayed_total", {}),
    "smsproxy.inbound.concat_late": ("smsproxy_inbound_multipart_total", {"outcome": "late"}),
    "smsproxy.inbound.concat_incomplete": ("smsproxy_inbound_multipart_total",
                                           {"outcome": "incomplete"}),
    "smsproxy.pool.exhausted": ("smsproxy_pool_exhausted_total", {}),
    "smsproxy.insight.cached": ("smsproxy_insight_cache_hits_total", {}),
    "smsproxy.pool.maintenance_failed": ("smsproxy_pool_maintenance_failures_total", {}),
    "smsproxy.pool.auth_failed": ("smsproxy_pool_credentials_refused_total", {}),
    "smsproxy.pool.bought": ("smsproxy_pool_numbers_bought_total", {}),
    "smsproxy.pool.lost": ("smsproxy_pool_numbers_lost_total", {}),
    "smsproxy.pool.cancelled": ("smsproxy_pool_numbers_cancelled_total", {}),
    "smsproxy.pool.rerouted": ("smsproxy_pool_rerouted_total", {}),
    "smsproxy.pool.conversations_lost": ("smsproxy_pool_conversations_lost_total", {}),
    "smsproxy.pool.shortfall": ("smsproxy_pool_shortfall_total", {}),
    "smsproxy.pool.budget_reached": ("smsproxy_limit_reached_total", {"limit": "pool_budget"}),
    "smsproxy.sends.daily_limit_reached": ("smsproxy_limit_reached_total",
                                           {"limit": "daily_sends"}),
    "smsproxy.receipts.unmatched": ("smsproxy_receipts_unmatched_total", {}),
    "smsproxy.inbound.masked": ("smsproxy_inbound_masked_total", {}),
    "smsproxy.inbound.truncated": ("smsproxy_inbound_truncated_total", {}),
    "smsproxy.sends.non_essential_stopped": ("smsproxy_replies_suppressed_total",
                                             {"reason": "daily_limit"}),
    "smsproxy.participants.erased": ("smsproxy_participants_erased_total", {}),
    "smsproxy.blocked.added": ("smsproxy_blocked_numbers_added_total", {}),
    "smsproxy.outbound.throttled": ("smsproxy_outbound_waits_total", {"reason": "rate_limit"}),
    "smsproxy.outbound.in_doubt": ("smsproxy_outbound_waits_total", {"reason": "in_doubt"}),
}
# Families whose last dotted word is a label value: smsproxy.<group>.<value>.
_LEGACY_GROUPS: dict[str, tuple[str, str]] = {
    "smsproxy.outbound.": ("smsproxy_outbound_sends_total", "outcome"),
    "smsproxy.conversations.": ("smsproxy_conversations_total", "outcome"),
    "smsproxy.callbacks.": ("smsproxy_callbacks_total", "outcome"),
    "smsproxy.inbound.": ("smsproxy_inbound_dropped_total", "reason"),
    "smsproxy.out_of_session.": ("smsproxy_replies_suppressed_total", "reason"),
    "smsproxy.participants.": ("smsproxy_participant_changes_total", "state"),
    "smsproxy.console.": ("smsproxy_console_actions_total", "action"),
}
_LEGACY_WEBHOOK = re.compile(r"smsproxy\.webhooks\.(\w+)\.(\w+)")
_SERIES = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_UNSAFE = re.compile(r'["\\\n,{}]')


def legacy_series(dotted: str) -> tuple[str, dict[str, str]]:
    """The family and labels an old-style dotted counter name stands for."""
    if dotted in LEGACY:
        family, labels = LEGACY[dotted]
        return family, dict(labels)
    webhook = _LEGACY_WEBHOOK.fullmatch(dotted)
    if webhook:
        return WEBHOOKS, {"kind": webhook[1], "outcome": webhook[2]}
    for prefix, (family, label) in _LEGACY_GROUPS.items():
        rest = dotted.removeprefix(prefix)
        if rest != dotted and "." not in rest:
            return family, {label: rest}
    # not converted yet: still exported, under the name the old exporter gave it
    return re.sub(r"[^a-zA-Z0-9_]", "_", dotted) + "_total", {}


def series_key(family: str, labels: Mapping[str, str] | None = None) -> str:
    """A series' hash field: its name and labels as the exposition format writes them."""
    if not labels:
        return family
    inner = ",".join(f'{k}="{_UNSAFE.sub("_", str(v))}"' for k, v in sorted(labels.items()))
    return f"{family}{{{inner}}}"


def parse_series(field: str) -> tuple[str, dict[str, str]]:
    """(name, labels) of a hash field; a dotted field of the old style is translated."""
    match = _SERIES.fullmatch(field)
    if match is None or (match["labels"] is None and "." in field):
        return legacy_series(field)
    return match["name"], dict(_LABEL.findall(match["labels"] or ""))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def histogram_fields(family: Family, seconds: float, labels: Mapping[str, str]
                     ) -> tuple[str, str, str]:
    """The (bucket, sum, count) fields one observation increments."""
    bound = next((b for b in family.buckets if seconds <= b), math.inf)
    return (
        series_key(f"{family.name}_bucket", {**labels, "le": _le(bound)}),
        series_key(f"{family.name}_sum", labels),
        series_key(f"{family.name}_count", labels),
    )


class Snapshot(dict[str, float]):
    """Every series by its hash field; an old-style dotted name finds its series too, so that
    readers written in the old style keep working until they are converted."""

    def __missing__(self, key: str) -> float:
        translated = series_key(*legacy_series(key))
        if translated != key and translated in self:
            return self[translated]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


# At most this many spelled series fields are kept per Counters (a label taking unbounded
# values would otherwise grow the dict without end).
_MAX_SPELLED = 4096


class Counters:
    """Counters and histograms of the whole deployment, written atomically into one hash."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._metrics = self._keys.metrics()
        # Each series' hash field, spelled once: spelling it (sorting and escaping the labels)
        # was a measurable part of a relay's CPU in the worker (docs/performance.md, section
        # 2). Few keys (families x label values); bounded all the same.
        self._fields: dict[Any, Any] = {}

    def _remember(self, key: Any, value: Any) -> Any:
        if len(self._fields) < _MAX_SPELLED:
            self._fields[key] = value
        return value

    def incr(self, name: str, amount: int = 1) -> None:
        """Count under an old-style dotted name (`smsproxy.outbound.sent`)."""
        field = self._fields.get(name)
        if field is None:
            field = self._remember(name, series_key(*legacy_series(name)))
        self._redis.hincrby(self._metrics, field, amount)

    def count(self, family: str, labels: Mapping[str, str] | None = None, amount: int = 1,
              pipe: Any = None) -> None:
        """Add `amount` to one labelled counter series (on a caller's pipeline if given)."""
        key = (family, tuple(labels.items()) if labels else ())
        field = self._fields.get(key)
        if field is None:
            field = self._remember(key, series_key(family, labels))
        (pipe if pipe is not None else self._redis).hincrby(self._metrics, field, amount)

    def observe(self, family: str, seconds: float, labels: Mapping[str, str] | None = None,
                pipe: Any = None) -> None:
        """Record one observation of a histogram: one round trip (or none, on a caller's
        pipeline, which the caller executes)."""
        spec = FAMILIES[family]
        seconds = max(0.0, seconds)
        bound = next((b for b in spec.buckets if seconds <= b), math.inf)
        spelled = (family, bound, tuple(labels.items()) if labels else ())
        fields = self._fields.get(spelled)
        if fields is None:
            fields = self._remember(spelled, histogram_fields(spec, seconds, labels or {}))
        bucket, total, count = fields
        own = pipe is None
        target = self._redis.pipeline(transaction=False) if own else pipe
        key = self._metrics
        target.hincrby(key, bucket, 1)
        target.hincrbyfloat(key, total, max(0.0, seconds))
        target.hincrby(key, count, 1)
        if own:
            target.execute()

    def add_fields(self, increments: Mapping[str, float]) -> None:
        """Add to many fields of the hash in one round trip (HistogramBuffer's flush)."""
        pipe = self._redis.pipeline(transaction=True)
        key = self._keys.metrics()
        for field, amount in increments.items():
            if isinstance(amount, int):
                pipe.hincrby(key, field, amount)
            else:
                pipe.hincrbyfloat(key, field, amount)
        pipe.execute()

    def snapshot(self) -> Snapshot:
        raw = self._redis.hgetall(self._keys.metrics())
        values = Snapshot()
        for field, value in raw.items():
            key = str(field)
            name, labels = parse_series(key)
            canonical = series_key(name, labels)
            values[canonical] = values.get(canonical, 0) + _number(value)
        return values

    def families(self) -> list[Metric]:
        """Every stored series as Prometheus metric families (histograms made cumulative)."""
        return list(export(self.snapshot()))


class HistogramBuffer:
    """Histogram observations (and counts) added up in this process and written to the shared
    hash in one pipeline about every FLUSH_SECONDS.

    For the webhook timings: writing each observation as it happens cost every webhook a
    second Redis round trip after its enqueue (docs/performance.md, benchmark 1). What is
    buffered is few fields (one per bucket, kind and status code), whatever the load. Under
    load, the request that finds the interval over writes the buffer (`flush_if_due`): one per
    process per second. The last observations of a burst are written by a daemon thread an
    interval later, so a quiet process's figures lag by about a second at most; /metrics writes
    its own process's buffer before it reads, a normal exit writes it too (atexit), and a
    process killed outright (SIGKILL) loses at most that second.

    The thread writes only while the last contact with the store went well (`store_failed`):
    it never retries a store that is down behind the requests' backs (redis-py's jittered
    reconnect backoff would run in it). While the store refuses connections the observations
    are kept, and written by the first request that finds it back; after a timeout they are
    dropped, since the write may have happened.
    """

    def __init__(self, counters: Counters, interval: float = FLUSH_SECONDS) -> None:
        self._counters = counters
        self._interval = interval
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[str, float] = {}
        self._next_flush = 0.0  # the first observation is written at once
        self._store_ok = True
        self._flusher: threading.Thread | None = None
        self._exit_hook = False
        # the fields of each (family, bucket, labels) seen: spelling them is most of the work
        # of an observation; few (buckets x kinds x status codes)
        self._fields: dict[tuple[str, float, tuple[tuple[str, str], ...]],
                           tuple[str, str, str]] = {}
        self._counted: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._counted_names: dict[str, str] = {}

    def observe(self, family: str, seconds: float, labels: Mapping[str, str] | None = None
                ) -> None:
        """Record one observation; no I/O."""
        spec = FAMILIES[family]
        seconds = max(0.0, seconds)
        bound = next((b for b in spec.buckets if seconds <= b), math.inf)
        key = (family, bound, tuple(sorted((labels or {}).items())))
        fields = self._fields.get(key)
        if fields is None:
            fields = self._fields[key] = histogram_fields(spec, seconds, labels or {})
        bucket, total, count = fields
        with self._lock:
            pending = self._pending
            pending[bucket] = pending.get(bucket, 0) + 1
            pending[total] = pending.get(total, 0.0) + seconds
            pending[count] = pending.get(count, 0) + 1
            if not self._exit_hook:
                atexit.register(self.flush)
                self._exit_hook = True

    def count(self, family: str, labels: Mapping[str, str] | None = None, amount: int = 1
              ) -> None:
        """Add to a counter series; no I/O (the worker's finished tasks: a round trip per task
        otherwise, docs/performance.md section 2)."""
        key = (family, tuple(labels.items()) if labels else ())
        field = self._counted.get(key)
        if field is None:
            field = self._counted[key] = series_key(family, labels)
        self._add(field, amount)

    def _add(self, field: str, amount: int) -> None:
        with self._lock:
            self._pending[field] = self._pending.get(field, 0) + amount
            if not self._exit_hook:
                atexit.register(self.flush)
                self._exit_hook = True

    def incr(self, name: str, amount: int = 1) -> None:
        """`count` under an old-style dotted name (`smsproxy.inbound.relayed`), as
        `Counters.incr` counts; no I/O."""
        field = self._counted_names.get(name)
        if field is None:
            field = self._counted_names[name] = series_key(*legacy_series(name))
        self._add(field, amount)

    def store_failed(self) -> None:
        """The caller's request found the store down: the thread leaves it alone until a
        request's write succeeds."""
        self._store_ok = False

    def flush_if_due(self) -> None:
        """Flush when the interval is over (else make sure the thread will), unless another
        thread is flushing."""
        if time.monotonic() < self._next_flush:
            self._start_flusher()
            return
        if self._flushing.acquire(blocking=False):
            try:
                self._store_ok = self.flush()
            finally:
                self._flushing.release()

    def flush(self) -> bool:
        """Write what is buffered now, in one pipeline; whether the store took it (or there
        was nothing to write)."""
        self._next_flush = time.monotonic() + self._interval
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return True
        try:
            self._counters.add_fields(pending)
            return True
        except redis.exceptions.TimeoutError:
            log.warning("%d metric fields dropped: the store timed out", len(pending))
        except redis.exceptions.RedisError:
            with self._lock:
                for field, value in pending.items():
                    self._pending[field] = self._pending.get(field, 0) + value
        return False

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._run, name="metrics-flush",
                                             daemon=True)
        self._flusher.start()

    def _run(self) -> None:
        """Write the buffer whenever the interval is over, until it stays empty (or the store
        was found down); the next request within an interval starts another."""
        try:
            while True:
                time.sleep(max(0.0, self._next_flush - time.monotonic()) + 0.05)
                with self._lock:
                    # decided under the lock `observe` and `_start_flusher` take: an
                    # observation added after this finds no thread and starts one
                    if not self._pending or not self._store_ok:
                        self._flusher = None
                        return
                if time.monotonic() >= self._next_flush and self._flushing.acquire(
                        blocking=False):
                    try:
                        self._store_ok = self.flush()
                    finally:
                        self._flushing.release()
        finally:
            with self._lock:
                if self._flusher is threading.current_thread():
                    self._flusher = None


def _number(value: Any) -> float:
    number = float(value)
    return int(number) if number.is_integer() else number


def export(values: Mapping[str, float]) -> Iterator[Metric]:
    """Counter and histogram families of a snapshot; known families always appear, at zero
    when nothing was counted yet, so that dashboards and alerts find every name."""
    counters: dict[str, dict[tuple[str, ...], float]] = {}
    counter_labels: dict[str, tuple[str, ...]] = {}
    histograms: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
    for field, value in values.items():
        name, labels = parse_series(field)
        base, part = _histogram_part(name)
        if base is not None:
            spec = FAMILIES[base]
            key = tuple(labels.get(label, "") for label in spec.labels)
            series = histograms.setdefault(base, {}).setdefault(key, {})
            slot = labels.get("le", "+Inf") if part == "bucket" else part
            series[slot] = series.get(slot, 0) + value
            continue
        names = FAMILIES[name].labels if name in FAMILIES else tuple(sorted(labels))
        counter_labels.setdefault(name, names)
        key = tuple(labels.get(label, "") for label in counter_labels[name])
        counters.setdefault(name, {})[key] = counters.get(name, {}).get(key, 0) + value
    for spec in FAMILIES.values():
        if spec.kind is Kind.COUNTER:
            counter_labels.setdefault(spec.name, spec.labels)
            counters.setdefault(spec.name, {})
    for name in sorted(counters):
        family = CounterMetricFamily(
            name.removesuffix("_total"), _help(name), labels=list(counter_labels[name])
        )
        values_by_key: dict[tuple[str, ...], float] = counters[name] or (
            {(): 0.0} if not counter_labels[name] else {})
        for key, value in sorted(values_by_key.items()):
            family.add_metric(list(key), value)
        yield family
    for spec in FAMILIES.values():
        if spec.kind is not Kind.HISTOGRAM:
            continue
        family_h = HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
        for hkey, hseries in sorted(histograms.get(spec.name, {}).items()):
            family_h.add_metric(list(hkey), _cumulative(spec, hseries), hseries.get("sum", 0.0))
        yield family_h


def _histogram_part(name: str) -> tuple[str | None, str]:
    for part in ("bucket", "sum", "count"):
        base = name.removesuffix(f"_{part}")
        if base != name and base in FAMILIES and FAMILIES[base].kind is Kind.HISTOGRAM:
            return base, part
    return None, ""


def _cumulative(spec: Family, series: Mapping[str, float]) -> list[tuple[str, float]]:
    running = 0.0
    buckets = []
    for bound in (*spec.buckets, math.inf):
        running += series.get(_le(bound), 0)
        buckets.append((_le(bound), running))
    return buckets


def _help(name: str) -> str:
    spec = FAMILIES.get(name)
    return spec.help if spec is not None else f"counted as {name} (not yet converted)"


def family_names(kinds: Iterable[Kind] = tuple(Kind)) -> list[str]:
    """The names of the stored families of the given kinds."""
    return [f.name for f in FAMILIES.values() if f.kind in set(kinds)]
