"""Celery's task messages as kombu's Redis transport stores them: the one owner of the wire format.

The web's fast path puts a job on its queue from a Lua script rather than through kombu
(web/queue.py says why), so it needs the very string kombu would LPUSH. It is built here with
Celery's and kombu's own code, the steps `app.send_task` takes, without a connection:

* `app.amqp.as_task_v2` makes the task message (protocol 2: headers, properties, body);
* kombu's serializer registry serializes the body, as `Producer.publish` does;
* a kombu Redis channel that has no connection prepares the message and adds what its
  `basic_publish` adds (the body encoding, delivery_info, a delivery tag); where the transport
  would LPUSH the result, the channel hands back the list and the serialized envelope instead.

tests/integration/test_publisher.py keeps the result equal, field by field, to what
`app.send_task` writes. Also here: whether two Redis URLs name the same database (the fast path
needs the broker to be the store's Redis), and the guard against transport options that would
move the queues to keys the fast path does not write.
"""

# kombu's transport and serialization functions carry no annotations.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from celery import Celery
from kombu import serialization
from kombu.compression import compress
from kombu.entity import maybe_delivery_mode
from kombu.transport import redis as kombu_redis
from kombu.utils.json import JSONEncoder as KombuJSONEncoder
from kombu.utils.json import dumps as dumps_envelope
from kombu.utils.uuid import uuid

from shared.jobs import QUEUE_OF, TaskName
from shared.sentinel import SCHEME as SENTINEL_SCHEME
from shared.sentinel import parse_sentinel_url
from shared.settings import SettingsError
from shared.tracing import inject_trace_context, tracing_enabled

# What monitoring tools (Flower, `celery events`) show of a task's arguments: never the
# payload itself, which holds phone numbers.
MASKED_ARGSREPR = "[…]"
NO_ARGSREPR = "[]"
NO_KWARGSREPR = "{}"
MASKED_KWARGSREPR = "{…}"
# Stated in every message: no result backend is configured and no caller reads a result.
IGNORE_RESULT = True

# Transport options that rename the Redis keys of the queues in a way the message cannot carry:
# kombu adds `global_keyprefix` to every key in its Redis client, on the way out, so the fast
# path's LPUSH (through the store's plain client) and the sweeper's re-push would land on lists
# no worker reads. `sep` and `priority_steps` also shape list names, but only through the
# channel's list naming, which `BrokerMessages` runs with the same options: they are followed.
KEY_RENAMING_OPTIONS = ("global_keyprefix",)

DEFAULT_REDIS_PORT = 6379
# A message property (kombu passes unknown publish options on as properties) holding when the
# job was published: /metrics reads it off the oldest message of each queue for its age.
PUBLISHED_AT = "smsproxy_published_at"


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """A job ready for the broker: the Redis list it goes on and what to LPUSH there."""

    queue: str
    body: str


def send_task_options(task: TaskName, payload: Any) -> dict[str, Any]:
    """The arguments of `app.send_task` for a job: the same call `BrokerMessages.build` writes."""
    args = _args(payload)
    return {"args": args, "queue": QUEUE_OF[task].value, "ignore_result": IGNORE_RESULT,
            PUBLISHED_AT: time.time(), **_reprs(args)}


def published_at(message: str) -> float | None:
    """When a queued message (as kombu's Redis transport stores it) was published, if it says."""
    try:
        value = json.loads(message)["properties"][PUBLISHED_AT]
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None


def queue_lists(queue: str, transport_options: Mapping[str, Any] | None = None) -> list[str]:
    """The Redis lists kombu's transport keeps one queue in (one per priority step)."""
    channel = _DetachedChannel(transport_options or {})
    return list(dict.fromkeys(channel._q_for_pri(queue, step)
                              for step in channel.priority_steps))


def refuse_key_renaming(options: Mapping[str, Any]) -> None:
    """Raise SettingsError, at start, for a broker transport option that renames the queues."""
    for name in KEY_RENAMING_OPTIONS:
        if options.get(name):
            raise SettingsError(
                f"broker_transport_options[{name!r}]: renames kombu's Redis keys, so the "
                "web's one-step enqueue and the outbox sweeper (which write the queue lists "
                "themselves) would put jobs where no worker looks; it is not supported"
            )


def legacy_queue_of(message: str) -> str:
    """The list of a message stored before the outbox recorded queues beside messages.

    Those were all written with kombu's anonymous exchange and priority 0, so the list is the
    routing key.
    """
    queue = json.loads(message)["properties"]["delivery_info"]["routing_key"]
    if not isinstance(queue, str) or not queue:
        raise ValueError("the message names no queue")
    return queue


class _DetachedChannel(kombu_redis.Channel):
    """kombu's Redis channel without a connection, used only to prepare messages.

    kombu's own `__init__` connects (it pings Redis); this one only takes the transport options,
    as kombu's virtual channel does. No state changes per message, so threads may share it.
    """

    def __init__(self, transport_options: Mapping[str, Any]) -> None:
        for name in self.from_transport_options:
            if name in transport_options:
                setattr(self, name, transport_options[name])

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> tuple[str, str]:
        """What the transport would LPUSH, and onto which list, instead of pushing it."""
        priority = self._get_message_priority(message, reverse=False)
        return self._q_for_pri(queue, priority), dumps_envelope(message)


class BrokerMessages:
    """Builds the broker messages of one Celery app's jobs; made once, no broker connection."""

    def __init__(self, app: Celery) -> None:
        transport_options = app.conf.broker_transport_options or {}
        refuse_key_renaming(transport_options)
        self._app = app
        self._transport_options = transport_options
        self._channel = _DetachedChannel(transport_options)
        self._serializer = app.conf.task_serializer
        self._compression = app.conf.task_compression
        self._delivery_mode = maybe_delivery_mode(app.conf.task_default_delivery_mode)
        self._templates: dict[tuple[TaskName, int], _Template | None] = {}

    def build(self, task: TaskName, payload: Any) -> BrokerMessage:
        """The message `app.send_task(task, **send_task_options(task, payload))` would write."""
        args = _args(payload)
        template = self._template(task) if args else None
        if template is None:
            return self.build_call(task, args)
        task_id, delivery_tag = _two_uuids()
        return template.fill(task_id, self._app.thread_oid, delivery_tag, time.time(), args)

    def build_call(
        self,
        task: TaskName,
        args: list[Any] | tuple[Any, ...],
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
    ) -> BrokerMessage:
        """The message of a call with any arguments, run no sooner than `countdown` seconds."""
        # kombu's basic_publish takes the delivery tag after the task id, as here
        return self.compose(task, args, kwargs, countdown, task_id=uuid(),
                            reply_to=self._app.thread_oid, published=time.time())

    def compose(
        self,
        task: TaskName,
        args: list[Any] | tuple[Any, ...],
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
        *,
        task_id: str,
        reply_to: str,
        published: float,
        delivery_tag: str | None = None,
    ) -> BrokerMessage:
        """`build_call` with the per-message values given: Celery's and kombu's code, step by
        step (without `delivery_tag`, kombu's channel makes a new one, as it does)."""
        args = list(args)
        reprs = _reprs(args)
        if kwargs:
            reprs["kwargsrepr"] = MASKED_KWARGSREPR
        headers, properties, body, _ = self._app.amqp.as_task_v2(
            task_id, task.value, args=args, kwargs=dict(kwargs or {}), countdown=countdown,
            # send_task answers to the app's per-thread id when no reply_to is given
            reply_to=reply_to, ignore_result=IGNORE_RESULT, **reprs,
        )
        # send_task passes the options it does not consume on as message properties too
        properties.update(reprs)
        # what Celery's instrumentation adds in before_task_publish, which send_task sends and
        # this path does not: the trace goes on across the queue (an `if` when tracing is off)
        inject_trace_context(task.value, headers)
        properties[PUBLISHED_AT] = published
        # Producer.publish: serialize, compress, delivery mode
        content_type, content_encoding, data = serialization.dumps(
            body, serializer=self._serializer
        )
        if self._compression:
            data, headers["compression"] = compress(data, self._compression)
        properties["delivery_mode"] = self._delivery_mode
        # Producer._publish, with kombu's anonymous exchange (what Celery uses for a direct
        # queue): the routing key is the queue
        channel = (self._channel if delivery_tag is None
                   else _FixedTagChannel(self._transport_options, delivery_tag))
        message = channel.prepare_message(
            data, None, content_type, content_encoding, headers, properties
        )
        queue, envelope = channel.basic_publish(
            message, exchange="", routing_key=QUEUE_OF[task].value
        )
        return BrokerMessage(queue, envelope)

    def _template(self, task: TaskName) -> _Template | None:
        """The task's message template for this process, or None where one would not hold:
        tracing on (a span and its ids per message), compression, a serializer other than
        JSON (whose encoding of the arguments is not cut out of the body's as here)."""
        if tracing_enabled() or self._compression or self._serializer != "json":
            return None
        # per process: Celery names the process in `origin` (its pid), and gunicorn forks
        key = (task, os.getpid())
        if key not in self._templates:  # two threads may both build it: the same template
            self._templates[key] = _Template.of(self, task)
        return self._templates[key]


# Stand-ins for what changes per message, in the one message a template is cut from. Plain
# ASCII, so that JSON writes them as they are; none can occur in a message otherwise.
_SLOT_ID = "smsproxy-slot-id-0f5e9a"
_SLOT_REPLY_TO = "smsproxy-slot-reply-to-0f5e9a"
_SLOT_TAG = "smsproxy-slot-delivery-tag-0f5e9a"
_SLOT_ARG = "smsproxy-slot-argument-0f5e9a"
_SLOT_PUBLISHED = 0.000271828182845  # JSON writes a float as its repr
# The template's own check: a payload with what JSON escapes (quotes, backslashes, non-ASCII,
# control characters, None), built both ways.
_CHECK_PAYLOAD = {"messageId": 'a"b\\c', "text": "héllo — \u2603\x00\n", "keyword": None}


class _FixedTagChannel(_DetachedChannel):
    """A detached channel whose every message gets one given delivery tag (a template's)."""

    def __init__(self, transport_options: Mapping[str, Any], tag: str) -> None:
        super().__init__(transport_options)
        self._tag = tag

    def _next_delivery_tag(self) -> str:
        return self._tag


@dataclass(frozen=True, slots=True)
class _Template:
    """One task's broker message with what changes per message cut out: made once per process
    with Celery's and kombu's own code (`BrokerMessages.compose`), then filled per message
    with the ids, the time and the arguments' encoding, without Celery's message machinery.

    `of` checks that a filled template is, byte for byte, the message `compose` makes with
    the same values; a template that fails the check is not used (None: the full path).
    """

    queue: str
    # the envelope's text between the slots, and each slot's name (one fewer than pieces)
    pieces: tuple[str, ...]
    slots: tuple[str, ...]
    # the task body's JSON around the arguments' JSON
    body_head: str
    body_tail: str
    # the arguments' JSON, as kombu's registered `json` serializer writes it (its `dumps` is
    # this encoder with its defaults), and the body's encoding as the envelope holds it
    encode_args: Callable[[Any], str]
    encode_body: Callable[[str], str]

    @classmethod
    def of(cls, builder: BrokerMessages, task: TaskName) -> _Template | None:
        channel = builder._channel
        sample = builder.compose(
            task, [_SLOT_ARG], task_id=_SLOT_ID, reply_to=_SLOT_REPLY_TO,
            published=_SLOT_PUBLISHED, delivery_tag=_SLOT_TAG,
        )
        # the task body as Producer.publish serialized it, and as the envelope holds it
        _, _, sample_body = serialization.dumps(
            _sample_body(builder, task), serializer=builder._serializer)
        _, _, argument = serialization.dumps([_SLOT_ARG], serializer="json")
        head, found, tail = sample_body.partition(argument)
        encoded = dumps_envelope(channel.encode_body(sample_body, channel.body_encoding)[0])
        marks = {
            dumps_envelope(_SLOT_ID): "id", dumps_envelope(_SLOT_REPLY_TO): "reply_to",
            dumps_envelope(_SLOT_TAG): "delivery_tag", repr(_SLOT_PUBLISHED): "published",
            encoded: "body",
        }
        if not found or argument in tail:
            return None
        pieces, slots = _cut(sample.body, marks)
        template = cls(sample.queue, pieces, slots, head, tail, KombuJSONEncoder().encode,
                       _body_encoder(channel))
        check = ("9f1c0d4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
                 "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9", 1764612345.678901)
        expected = builder.compose(
            task, [_CHECK_PAYLOAD], task_id=check[0], reply_to=check[1], delivery_tag=check[2],
            published=check[3])
        if template.fill(*check, [_CHECK_PAYLOAD]) != expected:
            return None
        return template

    def fill(self, task_id: str, reply_to: str, delivery_tag: str, published: float,
             args: list[Any]) -> BrokerMessage:
        """The message with these values (ids as Celery and kombu make them: uuids, which
        JSON writes as they are)."""
        body = self.body_head + self.encode_args(args) + self.body_tail
        values = {
            "id": f'"{task_id}"', "reply_to": f'"{reply_to}"',
            "delivery_tag": f'"{delivery_tag}"', "published": repr(published),
            "body": self.encode_body(body),
        }
        parts = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            parts.append(values[slot])
            parts.append(piece)
        return BrokerMessage(self.queue, "".join(parts))


def _two_uuids() -> tuple[str, str]:
    """Two ids as kombu's `uuid()` makes them (`str(uuid4())`: random, version 4, RFC 4122
    variant), from one read of the OS's randomness and without two `UUID` objects: these were
    ~5 % of a webhook's CPU."""
    raw = bytearray(os.urandom(32))
    for at in (0, 16):
        raw[at + 6] = raw[at + 6] & 0x0F | 0x40  # version 4
        raw[at + 8] = raw[at + 8] & 0x3F | 0x80  # variant: RFC 4122
    h = raw.hex()
    return (f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
            f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:64]}")


def _body_encoder(channel: _DetachedChannel) -> Callable[[str], str]:
    """The task body as the envelope's JSON holds it, after the channel's body encoding."""
    codec = channel.codecs.get(channel.body_encoding or "")
    if channel.body_encoding == "base64" and codec is not None:
        # base64's alphabet is nothing JSON escapes: the string as it is, in quotes
        return lambda body: f'"{codec.encode(body)}"'
    return lambda body: dumps_envelope(channel.encode_body(body, channel.body_encoding)[0])


def _sample_body(builder: BrokerMessages, task: TaskName) -> Any:
    """The task body (protocol 2) a template's sample message carries."""
    _, _, body, _ = builder._app.amqp.as_task_v2(
        _SLOT_ID, task.value, args=[_SLOT_ARG], kwargs={}, reply_to=_SLOT_REPLY_TO,
        ignore_result=IGNORE_RESULT, **_reprs([_SLOT_ARG]),
    )
    return body


def _cut(text: str, marks: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`text` split at every occurrence of the marks: the pieces between, and which mark each
    cut was."""
    pattern = re.compile("|".join(re.escape(mark) for mark in marks))
    pieces: list[str] = []
    slots: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        pieces.append(text[start:match.start()])
        slots.append(marks[match.group()])
        start = match.end()
    pieces.append(text[start:])
    return tuple(pieces), tuple(slots)


def _args(payload: Any) -> list[Any]:
    return [] if payload is None else [payload]


def _reprs(args: list[Any]) -> dict[str, str]:
    return {"argsrepr": MASKED_ARGSREPR if args else NO_ARGSREPR, "kwargsrepr": NO_KWARGSREPR}


@dataclass(frozen=True, slots=True)
class _RedisDatabase:
    """Where a Redis URL leads: the server, the database number and who logs in."""

    scheme: str  # "redis", "rediss" (TLS) or "unix"
    server: str  # "host:port", or a socket's path
    db: int
    username: str
    password: str | None


def same_redis_database(first: str, second: str) -> bool:
    """Whether two Redis URLs (redis-py's or kombu's forms) name the same database of one server,
    reached the same way by the same user.

    Loopback names (localhost, 127.0.0.1, [::1]) are one host; the port defaults to 6379 and the
    database to 0 (from the path, or `?db=`, which wins as in redis-py); `rediss://` is not
    `redis://`; a unix socket (`unix://` or kombu's `redis+socket://`) is its path;
    `redis+sentinel://` is its set of sentinels, master name and database (shared/sentinel.py).
    A URL of any other scheme (kombu's `sentinel://`, another broker) is never the same. Raises
    ValueError for a Redis URL with a malformed port or database.
    """
    a, b = _redis_database(first), _redis_database(second)
    return a is not None and a == b


def _redis_database(url: str) -> _RedisDatabase | None:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password else query.get("password")
    if scheme in {"redis", "rediss"}:
        server = f"{_host(parts.hostname)}:{parts.port or DEFAULT_REDIS_PORT}"  # .port checks it
        db = query.get("db", parts.path.strip("/"))
    elif scheme == SENTINEL_SCHEME:
        # the same sentinels (in any order) watching the same master: one Redis, wherever
        # the master is at the moment
        found = parse_sentinel_url(url)
        hosts = ",".join(sorted({f"{_host(h)}:{p}" for h, p in found.sentinels}))
        return _RedisDatabase("sentinel", f"{hosts}/{found.master}", found.db,
                              found.username or "default", found.password)
    elif scheme in {"unix", "redis+socket"}:
        if not parts.path:
            raise ValueError("a unix socket URL needs the socket's path")
        scheme, server = "unix", posixpath.normpath(parts.path)
        db = query.get("db", query.get("virtual_host", ""))
    else:
        return None
    try:
        number = int(db or 0)
    except ValueError:
        raise ValueError(f"the Redis database must be a number, not {db!r}") from None
    # no username is Redis's default user
    return _RedisDatabase(scheme, server, number, username or "default", password or None)


def _host(name: str | None) -> str:
    if not name or name.lower() in {"localhost", "localhost."}:
        return "loopback"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name.lower().rstrip(".")
    return "loopback" if address.is_loopback else address.compressed
