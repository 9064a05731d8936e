"""RabbitMQ's side of the wire: which URLs are RabbitMQ, the queues, the unwrapped message."""

from __future__ import annotations

import json

import pytest
from celery import Celery

from shared.amqp_broker import QUORUM_ARGUMENTS, is_amqp, task_queues, unwrap
from shared.broker_messages import MASKED_ARGSREPR, BrokerMessages
from shared.jobs import Queue, TaskName
from shared.settings import SettingsError


@pytest.mark.parametrize(("url", "amqp"), [
    ("amqp://guest:guest@127.0.0.1:5672//", True),
    ("AMQPS://broker.example/vhost", True),
    ("pyamqp://127.0.0.1", True),
    ("redis://127.0.0.1:6379/0", False),
    ("rediss://127.0.0.1:6379/0", False),
    ("sentinel://127.0.0.1:26379", False),
])
def test_which_urls_are_rabbitmq(url: str, amqp: bool) -> None:
    assert is_amqp(url) is amqp


def test_every_queue_is_a_durable_quorum_queue() -> None:
    queues = task_queues()
    assert [q.name for q in queues] == [q.value for q in Queue]
    for queue in queues:
        assert queue.durable
        assert queue.queue_arguments == QUORUM_ARGUMENTS
        # no per-message priority on a quorum queue (RabbitMQ 3.x): none is asked for
        assert "x-max-priority" not in queue.queue_arguments
        assert queue.routing_key == queue.name


def test_the_redis_envelope_unwraps_to_the_same_task_message() -> None:
    app = Celery("unwrap", set_as_current=False)
    app.conf.task_serializer = "json"
    message = BrokerMessages(app).build(TaskName.RELAY_INBOUND, {"messageId": "m-1"})
    body, headers, properties = unwrap(message.body)
    args, kwargs, _embed = json.loads(body)
    assert args == [{"messageId": "m-1"}] and kwargs == {}
    assert headers["task"] == TaskName.RELAY_INBOUND.value
    assert headers["argsrepr"] == MASKED_ARGSREPR  # no phone number reaches monitoring
    assert properties["content_type"] == "application/json"
    assert properties["delivery_mode"] == 2  # persistent
    # kombu's Redis bookkeeping and priority stay behind
    assert not {"priority", "delivery_tag", "delivery_info", "body_encoding"} & properties.keys()


def test_countdowns_must_stay_below_rabbitmqs_consumer_timeout(make_settings) -> None:
    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    assert make_settings(CELERY_BROKER_URL=amqp, SMSPROXY_VISIBILITY_TIMEOUT_SECONDS="1799")
    with pytest.raises(SettingsError, match="consumer_timeout"):
        make_settings(CELERY_BROKER_URL=amqp, SMSPROXY_VISIBILITY_TIMEOUT_SECONDS="1800")
    # on Redis the visibility timeout may be anything
    assert make_settings(SMSPROXY_VISIBILITY_TIMEOUT_SECONDS="3600")


def test_the_worker_app_on_rabbitmq_uses_quorum_queues_and_confirms(make_settings) -> None:
    from workers.celery_app import broker_options

    options = broker_options(make_settings(CELERY_BROKER_URL="amqp://127.0.0.1//"))
    assert options["broker_transport_options"] == {"confirm_publish": True}
    assert all(q.queue_arguments == QUORUM_ARGUMENTS for q in options["task_queues"])
    assert options["worker_consumer"] == "workers.celery_app:HeldCountdownConsumer"
    # the Redis transport keeps its own options, none of RabbitMQ's
    redis_options = broker_options(make_settings())
    assert "visibility_timeout" in redis_options["broker_transport_options"]
    assert "worker_consumer" not in redis_options


def test_the_held_countdown_consumer_drops_only_native_delayed_delivery() -> None:
    from celery.worker.consumer import Consumer

    from workers.celery_app import HeldCountdownConsumer

    ours = HeldCountdownConsumer.Blueprint.default_steps
    assert [s for s in Consumer.Blueprint.default_steps if s not in ours] == [
        "celery.worker.consumer.delayed_delivery:DelayedDelivery"]
