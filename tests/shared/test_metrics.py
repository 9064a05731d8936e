"""The metrics hash: Prometheus names and labels, old dotted names, histograms, gauges."""

from __future__ import annotations

import json

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.gauges import ALIVE_WITHIN_SECONDS, Gauges, Heartbeats
from shared.keys import Keys
from shared.metrics import (
    RELAY_LATENCY,
    TASKS,
    WEBHOOK_DURATION,
    WEBHOOKS,
    Counters,
    HistogramBuffer,
    export,
    legacy_series,
    series_key,
)
from shared.pool_inventory import PoolInventory

KEYS = Keys()


class _Collected:
    def __init__(self, metrics):
        self._metrics = list(metrics)

    def collect(self):
        return iter(self._metrics)


def _samples(metrics) -> dict[str, float]:
    """name{labels} -> value, as Prometheus would parse the exposition."""
    registry = CollectorRegistry()
    registry.register(_Collected(metrics))
    text = generate_latest(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[series_key(sample.name, sample.labels)] = sample.value
    return found


@pytest.mark.parametrize(("dotted", "family", "labels"), [
    ("smsproxy.webhooks.inbound.accepted", WEBHOOKS, {"kind": "inbound", "outcome": "accepted"}),
    ("smsproxy.inbound.unrouted", "smsproxy_inbound_dropped_total", {"reason": "unrouted"}),
    ("smsproxy.inbound.relayed", "smsproxy_inbound_relayed_total", {}),
    ("smsproxy.conversations.failed", "smsproxy_conversations_total", {"outcome": "failed"}),
    ("smsproxy.outbound.sent", "smsproxy_outbound_sends_total", {"outcome": "sent"}),
    ("smsproxy.outbound.throttled", "smsproxy_outbound_waits_total", {"reason": "rate_limit"}),
    ("smsproxy.pool.budget_reached", "smsproxy_limit_reached_total", {"limit": "pool_budget"}),
    ("smsproxy.sends.daily_limit_reached", "smsproxy_limit_reached_total",
     {"limit": "daily_sends"}),
    # not converted yet: exported under the old exporter's name
    ("smsproxy.brand.new", "smsproxy_brand_new_total", {}),
])
def test_dotted_names_become_families_and_labels(dotted, family, labels):
    assert legacy_series(dotted) == (family, labels)


def test_old_and_new_writes_land_on_one_series_and_old_readers_find_it(fake_redis):
    counters = Counters(fake_redis)
    counters.incr("smsproxy.webhooks.inbound.accepted")
    counters.count(WEBHOOKS, {"kind": "inbound", "outcome": "accepted"}, 2)
    # a field left by the exporter before this one (dotted) counts into the same series
    fake_redis.hincrby(KEYS.metrics(), "smsproxy.webhooks.inbound.accepted", 4)
    snapshot = counters.snapshot()
    assert snapshot[series_key(WEBHOOKS, {"kind": "inbound", "outcome": "accepted"})] == 7
    assert snapshot["smsproxy.webhooks.inbound.accepted"] == 7
    assert snapshot.get("smsproxy.webhooks.receipt.accepted", 0) == 0
    assert _samples(counters.families())[
        'smsproxy_webhooks_total{kind="inbound",outcome="accepted"}'] == 7


def test_label_values_cannot_break_the_exposition(fake_redis):
    counters = Counters(fake_redis)
    counters.count("smsproxy_inbound_dropped_total", {"reason": 'a"b,c}\n'})
    samples = _samples(counters.families())
    assert samples['smsproxy_inbound_dropped_total{reason="a_b_c__"}'] == 1


def test_histograms_are_exported_cumulative_with_sum_and_count(fake_redis):
    counters = Counters(fake_redis)
    for seconds in (0.05, 0.3, 0.3, 7.0, 1000.0):
        counters.observe(RELAY_LATENCY, seconds)
    samples = _samples(counters.families())
    bucket = "smsproxy_relay_latency_seconds_bucket"
    assert samples[f'{bucket}{{le="0.1"}}'] == 1
    assert samples[f'{bucket}{{le="0.5"}}'] == 3
    assert samples[f'{bucket}{{le="10.0"}}'] == 4
    assert samples[f'{bucket}{{le="+Inf"}}'] == 5
    assert samples["smsproxy_relay_latency_seconds_count"] == 5
    assert samples["smsproxy_relay_latency_seconds_sum"] == pytest.approx(1007.65)


def test_every_known_family_is_exported_before_anything_is_counted():
    names = {family.name for family in export({})}
    assert {"smsproxy_webhooks", "smsproxy_limit_reached", "smsproxy_tasks",
            "smsproxy_relay_latency_seconds", "smsproxy_vonage_request_duration_seconds"} <= names


def _message(published: float) -> str:
    return json.dumps({"body": "", "properties": {"smsproxy_published_at": published}})


def test_queue_depth_and_the_age_of_each_queues_oldest_job(fake_redis):
    now = 10_000.0
    fake_redis.lpush("inbound", _message(now - 40), _message(now - 5))  # the tail is oldest
    fake_redis.lpush("outbound", "no timestamp: an old message")
    gauges = Gauges(fake_redis, fake_redis, PoolInventory(fake_redis), {"GB": 3})
    samples = _samples(gauges.collect(now))
    assert samples['smsproxy_queue_depth{queue="inbound"}'] == 2
    assert samples['smsproxy_queue_oldest_age_seconds{queue="inbound"}'] == pytest.approx(40)
    assert samples['smsproxy_queue_depth{queue="outbound"}'] == 1
    assert samples['smsproxy_queue_oldest_age_seconds{queue="outbound"}'] == 0
    assert samples['smsproxy_queue_depth{queue="pool"}'] == 0
    assert samples['smsproxy_pool_target_numbers{country="GB"}'] == 3
    assert samples['smsproxy_pool_free_capacity{country="GB"}'] == 0


def test_workers_alive_counts_recent_heartbeats_only(fake_redis):
    now = 50_000.0
    heartbeats = Heartbeats(fake_redis)
    heartbeats.beat("worker1@a", now - 1)
    heartbeats.beat("worker2@a", now - ALIVE_WITHIN_SECONDS - 1)  # missed three beats
    heartbeats.beat("worker3@b", now - 2)
    heartbeats.gone("worker3@b")  # shut down cleanly
    gauges = Gauges(fake_redis, fake_redis, PoolInventory(fake_redis), {})
    assert _samples(gauges.collect(now))["smsproxy_workers_alive"] == 1


def test_vonage_calls_are_timed_by_api_and_outcome_and_results_pass_through(fake_redis):
    from shared.vonage_gateway import TimedVonage, VonageFailure
    from tests.doubles import FakeVonage

    fake = FakeVonage(numbers_failure=VonageFailure("http500", "down", transient=True))
    timed = TimedVonage(fake, Counters(fake_redis))
    sent = timed.send_sms(sender="447700900100", recipient="447400123456", text="hi",
                          client_ref="r-1", callback=None)
    assert sent.message_ids and fake.sent
    with pytest.raises(VonageFailure):
        timed.owned_numbers()
    snapshot = Counters(fake_redis).snapshot()
    count = "smsproxy_vonage_request_duration_seconds_count"
    assert snapshot[f'{count}{{api="sms",outcome="ok"}}'] == 1
    assert snapshot[f'{count}{{api="numbers_owned",outcome="error"}}'] == 1


def test_buffered_observations_write_what_direct_ones_do():
    direct, buffered = fakeredis.FakeRedis(decode_responses=True), \
        fakeredis.FakeRedis(decode_responses=True)
    buffer = HistogramBuffer(Counters(buffered), interval=60)
    samples = [(0.0004, "200"), (0.003, "200"), (0.003, "200"), (0.07, "503"), (9.0, "200"),
               (-1.0, "400")]
    for seconds, code in samples:
        labels = {"kind": "inbound", "code": code}
        Counters(direct).observe(WEBHOOK_DURATION, seconds, labels)
        buffer.observe(WEBHOOK_DURATION, seconds, labels)
    assert Counters(buffered).snapshot() == {}  # nothing written before a flush
    buffer.flush()
    assert Counters(buffered).snapshot() == pytest.approx(Counters(direct).snapshot())
    buffer.flush()  # nothing new: nothing more written
    assert Counters(buffered).snapshot() == pytest.approx(Counters(direct).snapshot())


def test_buffered_counts_write_what_direct_ones_do():
    direct, buffered = fakeredis.FakeRedis(decode_responses=True), \
        fakeredis.FakeRedis(decode_responses=True)
    buffer = HistogramBuffer(Counters(buffered), interval=60)
    for task, state in [("relay_inbound", "success"), ("relay_inbound", "success"),
                        ("send_sms", "retry"), ("relay_inbound", "failure")]:
        labels = {"task": task, "queue": "inbound", "state": state}
        Counters(direct).count(TASKS, labels)
        buffer.count(TASKS, labels)
    assert Counters(buffered).snapshot() == {}  # nothing written before a flush
    buffer.flush()
    assert Counters(buffered).snapshot() == Counters(direct).snapshot()
    assert Counters(direct).snapshot()[series_key(
        TASKS, {"task": "relay_inbound", "queue": "inbound", "state": "success"})] == 2


def test_buffered_counts_under_dotted_names_write_what_counters_incr_does():
    direct, buffered = fakeredis.FakeRedis(decode_responses=True), \
        fakeredis.FakeRedis(decode_responses=True)
    buffer = HistogramBuffer(Counters(buffered), interval=60)
    for name in ["smsproxy.inbound.relayed", "smsproxy.inbound.relayed",
                 "smsproxy.inbound.blocked"]:
        Counters(direct).incr(name)
        buffer.incr(name)
    assert Counters(buffered).snapshot() == {}  # nothing written before a flush
    buffer.flush()
    assert Counters(buffered).snapshot() == Counters(direct).snapshot()
    assert Counters(direct).snapshot()["smsproxy_inbound_relayed_total"] == 2


def test_vonage_calls_timed_into_a_buffer_are_written_at_its_flush():
    from shared.vonage_gateway import TimedVonage
    from tests.doubles import FakeVonage

    direct, buffered = fakeredis.FakeRedis(decode_responses=True), \
        fakeredis.FakeRedis(decode_responses=True)
    buffer = HistogramBuffer(Counters(buffered), interval=60)
    buffer.flush()  # the first write is due at once; the next one an interval later
    for timings in (Counters(direct), buffer):
        TimedVonage(FakeVonage(), timings).send_sms(
            sender="447700900100", recipient="447400123456", text="hi", client_ref="r-1",
            callback=None)
    count = 'smsproxy_vonage_request_duration_seconds_count{api="sms",outcome="ok"}'
    assert Counters(direct).snapshot()[count] == 1
    assert count not in Counters(buffered).snapshot()  # buffered: not written yet
    buffer.flush()
    assert Counters(buffered).snapshot()[count] == 1
