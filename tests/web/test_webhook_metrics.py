"""What web counts about webhooks, and what /metrics says when the store is down."""

from __future__ import annotations

import time

import fakeredis
import redis

from shared.metrics import FLUSH_SECONDS, WEBHOOK_DURATION, Counters, HistogramBuffer
from tests.doubles import BadPublisher
from web.app import create_app
from web.services import flush_timings

INBOUND = {"msisdn": "447400123456", "to": "447700900100", "messageId": "m-1", "text": "hi"}


def _count(fake_redis, kind: str, code: str) -> float:
    return Counters(fake_redis).snapshot().get(
        f'smsproxy_webhook_duration_seconds_count{{code="{code}",kind="{kind}"}}', 0)


def test_every_answer_is_timed_by_kind_and_status(make_client, fake_redis, publisher):
    client = make_client()
    assert client.post("/webhooks/inbound-sms", data=INBOUND).status_code == 200
    assert client.post("/webhooks/inbound-sms", data={"to": "1"}).status_code == 400
    assert client.post("/webhooks/delivery-receipt", data={}).status_code == 400
    down = make_client(publisher=BadPublisher())  # a broker apart from the store, down
    assert down.post("/webhooks/inbound-sms", data={**INBOUND, "messageId": "m-2"}) \
        .status_code == 503
    # buffered in each process, written about once a second: write them now
    flush_timings(client.application)
    flush_timings(down.application)
    assert _count(fake_redis, "inbound", "200") == 1
    assert _count(fake_redis, "inbound", "400") == 1
    assert _count(fake_redis, "receipt", "400") == 1
    assert _count(fake_redis, "inbound", "503") == 1  # the store is up: the 503 is counted
    # only webhooks are timed here: other endpoints add nothing
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    counted = {k: v for k, v in Counters(fake_redis).snapshot().items()
               if k.startswith("smsproxy_webhook_duration_seconds_count")}
    assert sum(counted.values()) == 4, counted


def test_timings_reach_the_store_within_about_a_second_with_no_more_webhooks(
        make_client, fake_redis):
    client = make_client()
    for n in range(4):
        assert client.post("/webhooks/inbound-sms", data={**INBOUND, "messageId": f"b-{n}"}) \
            .status_code == 200
    # the first is written at once, the rest by the process's flusher an interval later
    deadline = time.monotonic() + FLUSH_SECONDS + 5
    while _count(fake_redis, "inbound", "200") < 4:
        assert time.monotonic() < deadline, _count(fake_redis, "inbound", "200")
        time.sleep(0.05)


def test_a_store_found_down_is_left_alone_by_the_flusher():
    server = fakeredis.FakeServer()
    store = fakeredis.FakeRedis(server=server, decode_responses=True)
    buffer = HistogramBuffer(Counters(store), interval=0.2)
    buffer.observe(WEBHOOK_DURATION, 0.003, {"kind": "inbound", "code": "200"})
    buffer.flush_if_due()  # the first: written at once
    buffer.observe(WEBHOOK_DURATION, 0.003, {"kind": "inbound", "code": "503"})
    buffer.store_failed()
    buffer.flush_if_due()  # within the interval: the flusher would write it...
    time.sleep(0.6)
    assert _count(store, "inbound", "503") == 0  # ...but not to a store found down
    buffer.flush_if_due()  # a request past the interval writes it (the store answers)
    assert _count(store, "inbound", "503") == 1


def test_a_scrape_writes_its_processs_timings_first(make_client, fake_redis):
    client = make_client()
    for n in range(3):
        client.post("/webhooks/inbound-sms", data={**INBOUND, "messageId": f"s-{n}"})
    scraped = client.get("/metrics").get_data(as_text=True)
    assert 'smsproxy_webhook_duration_seconds_count{code="200",kind="inbound"} 3.0' in scraped


def test_timings_are_kept_while_the_store_refuses_and_written_once_it_is_back():
    server = fakeredis.FakeServer()
    store = fakeredis.FakeRedis(server=server, decode_responses=True)
    buffer = HistogramBuffer(Counters(store), interval=60)
    buffer.observe(WEBHOOK_DURATION, 0.003, {"kind": "inbound", "code": "503"})
    server.connected = False  # every command now raises ConnectionError
    buffer.flush()
    server.connected = True
    assert _count(store, "inbound", "503") == 0
    buffer.flush()
    assert _count(store, "inbound", "503") == 1
    assert Counters(store).snapshot()[
        'smsproxy_webhook_duration_seconds_bucket{code="503",kind="inbound",le="0.005"}'] == 1


def test_the_job_carries_when_its_webhook_was_received(client, publisher):
    before = time.time()
    client.post("/webhooks/inbound-sms", data=INBOUND)
    [(_, payload)] = publisher.published
    # given to the millisecond, rounded: compared as `before` would be given (rounding keeps
    # the order, where `before` itself may be up to 0.5 ms above the rounded value)
    assert float(f"{before:.3f}") <= float(payload["received_at"]) <= time.time() + 1
    assert set(payload) == {"msisdn", "to", "messageId", "text", "type", "received_at"}


def test_a_webhook_sent_with_its_own_received_at_gets_webs(client, publisher):
    client.post("/webhooks/inbound-sms", data={**INBOUND, "received_at": "1.0"})
    [(_, payload)] = publisher.published
    assert float(payload["received_at"]) > 1.0


def test_metrics_with_the_store_down_say_so_instead_of_failing(make_settings, publisher):
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)
    app = create_app(make_settings(), redis_client=dead, publisher=publisher)
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.get_data(as_text=True).splitlines()[-1] == "smsproxy_store_up 0.0"


def test_an_observation_made_while_the_flusher_waits_is_written_too(fake_redis):
    buffer = HistogramBuffer(Counters(fake_redis), interval=0.2)
    labels = {"kind": "inbound", "code": "200"}

    def answer() -> None:
        buffer.observe(WEBHOOK_DURATION, 0.002, labels)
        buffer.flush_if_due()

    answer()  # the first: written at once
    answer()  # within the interval: the flusher will write it
    time.sleep(0.21)
    answer()  # past the interval: this request writes both...
    answer()  # ...and this one, within the next interval, is left to the flusher, which
    # was already waiting: it must not end before writing it
    deadline = time.monotonic() + 3
    while _count(fake_redis, "inbound", "200") < 4:
        assert time.monotonic() < deadline, _count(fake_redis, "inbound", "200")
        time.sleep(0.02)
