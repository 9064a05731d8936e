"""RabbitMQ as the broker: a webhook answers 200 only once RabbitMQ confirmed its job, 503 when
RabbitMQ refuses or does not answer; the outbox sweeper re-publishes through RabbitMQ.

The machine's RabbitMQ, in a vhost of our own (tests/rabbitmq.py), reached through a relay the
test can cut or freeze; a real redis-server as the store; the real Publisher.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from kombu import Connection

from devtools.redis_server import RedisServer
from shared.amqp_broker import task_queues
from shared.jobs import Queue
from shared.outbox import Outbox
from shared.settings import Settings
from shared.wiring import broker_amqp, connect_redis
from tests.rabbitmq import TcpProxy, private_vhost
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TIMEOUT = 0.5  # SMSPROXY_PUBLISH_TIMEOUT_SECONDS


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with private_vhost("ack") as url:
        yield url


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    relay = TcpProxy()
    try:
        yield relay
    finally:
        relay.close()


def drain(url: str) -> list[dict[str, Any]]:
    """Take every message off every queue of the vhost: (queue, messageId or task, headers)."""
    taken: list[dict[str, Any]] = []
    with Connection(url) as connection:
        channel = connection.channel()
        for queue in task_queues():
            queue.bind(channel).declare()
            while (message := queue.bind(channel).get(no_ack=True)) is not None:
                args, _kwargs, _embed = json.loads(message.body)
                taken.append({"queue": queue.name, "task": message.headers["task"],
                              "id": args[0].get("messageId") if args else None,
                              "argsrepr": message.headers.get("argsrepr")})
    return taken


@pytest.fixture
def make_web(make_settings: Callable[..., Settings]) -> Callable[[RedisServer, str], FlaskClient]:
    def build(store: RedisServer, broker_url: str) -> FlaskClient:
        settings = make_settings(REDIS_URL=store.url, CELERY_BROKER_URL=broker_url,
                                 SMSPROXY_PUBLISH_TIMEOUT_SECONDS=str(TIMEOUT))
        return create_app(settings).test_client()

    return build


def post(web: FlaskClient, message_id: str) -> Any:
    form = {"msisdn": "447400123456", "to": "447700900100", "messageId": message_id, "text": "hi"}
    return web.post("/webhooks/inbound-sms", data=form)


def test_200_only_once_confirmed_and_503_when_refused_or_hung(
    vhost: str, store: RedisServer, proxy: TcpProxy, make_web: Callable[..., FlaskClient]
) -> None:
    web = make_web(store, proxy.url(vhost))
    assert post(web, "before").json == {"status": "queued"}
    assert post(web, "before").json == {"status": "duplicate"}  # the dedupe stays in Redis

    proxy.cut()  # RabbitMQ unreachable: connection refused
    refused = post(web, "refused")
    assert refused.status_code == 503, refused.get_data(as_text=True)
    assert refused.json["error"]["code"] == "queue_unavailable"
    proxy.restore()
    # nothing reached RabbitMQ: the claim was dropped, Vonage's retry is taken at once
    assert post(web, "refused").json == {"status": "queued"}

    proxy.freeze()  # RabbitMQ hung: the connection stays open, no confirm comes
    try:
        hung = post(web, "hung")
        assert hung.status_code == 503, hung.get_data(as_text=True)
    finally:
        proxy.thaw()

    messages = drain(vhost)
    ids = [m["id"] for m in messages]
    # "hung" may have reached RabbitMQ once (its confirm never came back in time)
    assert [i for i in ids if i != "hung"] == ["before", "refused"]
    assert ids.count("hung") <= 1
    assert {m["queue"] for m in messages} == {Queue.INBOUND.value}
    assert all(m["task"] == "smsproxy.relay_inbound" for m in messages)
    assert all(m["argsrepr"] == "[…]" for m in messages)  # no phone number in monitoring


def test_metrics_read_the_queue_depths_from_rabbitmq(
    vhost: str, store: RedisServer, make_web: Callable[..., FlaskClient]
) -> None:
    web = make_web(store, vhost)
    for message_id in ("depth-1", "depth-2"):
        assert post(web, message_id).json == {"status": "queued"}
    exposition = web.get("/metrics").get_data(as_text=True)
    assert 'smsproxy_queue_depth{queue="inbound"} 2.0' in exposition
    assert 'smsproxy_queue_depth{queue="outbound"} 0.0' in exposition
    assert [m["id"] for m in drain(vhost)] == ["depth-1", "depth-2"]


def test_the_sweeper_republishes_through_rabbitmq(
    vhost: str, store: RedisServer, make_web: Callable[..., FlaskClient],
    make_settings: Callable[..., Settings],
) -> None:
    web = make_web(store, vhost)
    assert post(web, "lost-1").json == {"status": "queued"}
    assert [m["id"] for m in drain(vhost)] == ["lost-1"]  # taken and never settled: "lost"

    settings = make_settings(REDIS_URL=store.url, CELERY_BROKER_URL=vhost)
    outbox = Outbox(connect_redis(settings, fail_fast=False), settings,
                    publisher=broker_amqp(settings))
    assert outbox.queues_client is None  # no Redis lists to read queue depths from
    # made due now rather than waited for (its due time is minutes away)
    client = connect_redis(settings, fail_fast=False)
    client.zadd("smsproxy:pending:due", {"inbound:lost-1": 0}, xx=True)
    report = outbox.sweep(now=0.0)
    assert report.republished == 1
    assert [m["id"] for m in drain(vhost)] == ["lost-1"]


def test_our_publish_is_the_message_celery_would_publish(
    vhost: str, store: RedisServer, make_settings: Callable[..., Settings]
) -> None:
    """Web's confirmed publish and Celery's own `send_task` put the same task message on the
    same quorum queue (ids and publish times apart)."""
    from shared.broker_messages import send_task_options
    from shared.jobs import TaskName
    from web.queue import Publisher
    from workers.celery_app import make_celery

    settings = make_settings(REDIS_URL=store.url, CELERY_BROKER_URL=vhost)
    payload = {"messageId": "same-1", "msisdn": "447400123456"}
    app = make_celery(settings)
    app.send_task(TaskName.RELAY_INBOUND.value, **send_task_options(TaskName.RELAY_INBOUND,
                                                                    payload))
    Publisher(settings, connect_redis(settings, fail_fast=True)).publish(
        TaskName.RELAY_INBOUND, payload)
    with Connection(vhost) as connection:
        channel = connection.channel()
        queue = next(q for q in task_queues() if q.name == Queue.INBOUND.value).bind(channel)
        theirs, ours = queue.get(no_ack=True), queue.get(no_ack=True)
        assert queue.get(no_ack=True) is None
    assert theirs is not None and ours is not None
    assert json.loads(ours.body) == json.loads(theirs.body)
    varying = {"id", "root_id"}
    assert {k: v for k, v in ours.headers.items() if k not in varying} == \
        {k: v for k, v in theirs.headers.items() if k not in varying}
    for name in ("content_type", "content_encoding", "delivery_mode"):
        assert ours.properties.get(name) == theirs.properties.get(name) or \
            getattr(ours, name, None) == getattr(theirs, name, None), name
