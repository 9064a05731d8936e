"""RabbitMQ as the broker (Redis staying the store): quorum queues, publisher confirms.

With `CELERY_BROKER_URL=amqp://…` the jobs travel through kombu's AMQP transport (py-amqp).
Every queue is a quorum queue: replicated, durable, and a delivery stays the consumer's until it
is acknowledged or its channel closes, when RabbitMQ hands it out again at once; so the
Redis transport's blind spot (a message popped but not yet recorded as unacknowledged,
celery#7950) does not exist here, and no visibility timeout is involved in redelivery.

Web and the outbox sweeper publish here the very message shared/broker_messages.py builds for
the Redis transport (one builder: masked arguments, trace context, publish time), unwrapped from
its Redis envelope into an AMQP publish on the default exchange, with publisher confirms: a
publish returns only once RabbitMQ has taken the message onto the (declared) queue, and raises
when it refuses it or does not answer within the timeout.
"""

# kombu and py-amqp carry no annotations.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from kombu.connection import Connection
from kombu.entity import Queue as KombuQueue
from kombu.messaging import Producer

from shared.jobs import Queue

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
# Declared on every queue, by workers and publishers alike: RabbitMQ refuses a second
# declaration that differs (PRECONDITION_FAILED), so there is one definition, here.
QUORUM_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
# RabbitMQ's default `consumer_timeout` (30 min): a delivery held unacknowledged longer closes
# the consumer's channel. Celery holds a countdown's message unacknowledged in the worker until
# it is due, so every countdown must stay far below this (shared/settings.py checks it).
RABBITMQ_CONSUMER_TIMEOUT_SECONDS = 1800
# Connections a publishing process keeps (web's threads take one each while they publish).
POOL_LIMIT = 16
# AMQP basic properties the envelope carries that an AMQP message can hold too; the rest
# (argsrepr, the publish time, kombu's Redis bookkeeping) are Redis-transport properties.
_CARRIED_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode")


def is_amqp(url: str) -> bool:
    """Whether a broker URL names RabbitMQ (kombu's py-amqp transport)."""
    return urlsplit(url.strip()).scheme.lower() in AMQP_SCHEMES


def task_queues() -> list[KombuQueue]:
    """Every task queue as a durable quorum queue (its exchange: a direct one of its name)."""
    return [KombuQueue(q.value, routing_key=q.value, durable=True,
                       queue_arguments=dict(QUORUM_ARGUMENTS)) for q in Queue]


def unwrap(envelope: str) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """A Redis-transport envelope as an AMQP message: body, headers, properties."""
    message = json.loads(envelope)
    properties = message.get("properties") or {}
    body = message["body"]
    if properties.get("body_encoding") == "base64":
        data = base64.b64decode(body)
    else:
        data = str(body).encode("utf-8")
    carried = {name: properties[name] for name in _CARRIED_PROPERTIES if name in properties}
    carried["content_type"] = message.get("content-type")
    carried["content_encoding"] = message.get("content-encoding")
    return data, dict(message.get("headers") or {}), carried


class AmqpBroker:
    """Publishes jobs to RabbitMQ over pooled connections, confirmed, within a timeout.

    No kombu retry runs (`retry=False`, `max_retries` 0): a caller with a deadline (the
    webhook) retries itself, and a publish that timed out is not replayed (it may have landed).
    A connection that failed is dropped without a goodbye (a hung broker would not answer one)
    and the pool opens a new one next time.
    """

    def __init__(self, url: str, timeout: float, *, pool_limit: int = POOL_LIMIT) -> None:
        self._timeout = timeout
        self._connection = Connection(
            url, connect_timeout=timeout, heartbeat=0,
            transport_options={
                "confirm_publish": True,
                # py-amqp's socket bounds: a hung broker costs one timeout, not forever
                "read_timeout": timeout, "write_timeout": timeout,
                # default_channel's reconnect loop: one attempt, then raise
                "max_retries": 0,
            },
        )
        self._pool = self._connection.Pool(limit=pool_limit)
        self._queues = {q.name: q for q in task_queues()}

    def publish(self, queue: str, envelope: str) -> None:
        """Publish one message and wait for RabbitMQ's confirm; raises on refusal or timeout."""
        deadline = time.monotonic() + self._timeout
        body, headers, properties = unwrap(envelope)
        declared = self._queues.get(queue)
        connection = self._pool.acquire(block=True, timeout=self._timeout)
        try:
            producer = Producer(connection.default_channel)
            producer.publish(
                body, exchange="", routing_key=queue, headers=headers,
                # declared once per connection (kombu caches it): the queue exists, so the
                # default exchange routes the message and the confirm means it is queued
                declare=[declared] if declared is not None else [],
                retry=False, timeout=self._timeout,
                confirm_timeout=max(deadline - time.monotonic(), 0.05),
                **properties,
            )
        except BaseException:
            connection.collect()  # no close handshake with a broker that may be hung
            raise
        finally:
            connection.release()

    def push(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Publish (queue, envelope) pairs one after another (the outbox sweeper's re-publish)."""
        for queue, envelope in pairs:
            self.publish(queue, envelope)

    def depths(self) -> dict[str, int]:
        """Messages ready (waiting, not handed out) in each task queue, as RabbitMQ counts them.

        A declaration answers with the count; declaring (with the one definition) rather than
        checking passively makes a queue no one has declared yet read 0 instead of closing the
        channel.
        """
        connection = self._pool.acquire(block=True, timeout=self._timeout)
        try:
            channel = connection.default_channel
            counts: dict[str, int] = {}
            for name, queue in self._queues.items():
                _, ready, _consumers = queue.bind(channel).queue_declare()
                counts[name] = int(ready)
            return counts
        except BaseException:
            connection.collect()
            raise
        finally:
            connection.release()

    def ping(self) -> bool:
        """Whether RabbitMQ accepts a connection now (one attempt within the timeout)."""
        try:
            connection = self._pool.acquire(block=True, timeout=self._timeout)
        except Exception:  # noqa: BLE001 (a pool exhausted by hung publishes: not ready)
            return False
        try:
            connection.ensure_connection(max_retries=0)
            return True
        except Exception:  # noqa: BLE001 (any failure to connect means not ready)
            connection.collect()
            return False
        finally:
            connection.release()
