"""The wire format's owner: messages built without a broker, the same-database rule, the guard."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from celery import Celery

from shared.broker_messages import (
    PUBLISHED_AT,
    BrokerMessages,
    legacy_queue_of,
    published_at,
    refuse_key_renaming,
    same_redis_database,
    send_task_options,
)
from shared.jobs import QUEUE_OF, TaskName
from shared.settings import SettingsError

# nothing listens there: building a message must not need the broker
NOWHERE = "redis://127.0.0.1:9/0"


def app(**transport_options: object) -> Celery:
    celery = Celery("test", broker=NOWHERE, set_as_current=False)
    celery.conf.update(task_serializer="json", broker_transport_options=transport_options)
    return celery


@pytest.mark.parametrize("task", list(TaskName))
def test_message_goes_on_the_tasks_queue_without_a_connection(task):
    payload = None if task is TaskName.MAINTAIN_POOL else {"from": "447400123456"}
    message = BrokerMessages(app()).build(task, payload)
    envelope = json.loads(message.body)
    assert message.queue == QUEUE_OF[task].value
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": message.queue}
    assert envelope["headers"]["task"] == task.value
    args = json.loads(base64.b64decode(envelope["body"]))[0]
    assert args == ([] if payload is None else [payload])
    assert envelope["headers"]["argsrepr"] == ("[]" if payload is None else "[…]")
    assert "447400123456" not in json.dumps(envelope["headers"])


def test_each_message_has_its_own_ids():
    builder = BrokerMessages(app())
    first, second = (json.loads(builder.build(TaskName.SEND_SMS, "o-1").body) for _ in "ab")
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_send_task_gets_the_same_masked_call():
    options = send_task_options(TaskName.RELAY_INBOUND, {"msisdn": "447400123456"})
    assert isinstance(options.pop(PUBLISHED_AT), float)
    assert options == {
        "args": [{"msisdn": "447400123456"}], "queue": "inbound", "ignore_result": True,
        "argsrepr": "[…]", "kwargsrepr": "{}",
    }


def test_a_message_says_when_it_was_published():
    body = BrokerMessages(app()).build(TaskName.SEND_SMS, "o-1").body
    assert published_at(body) == json.loads(body)["properties"][PUBLISHED_AT]
    assert published_at("not json") is None
    assert published_at(json.dumps({"properties": {}})) is None


def test_transport_options_that_shape_messages_are_followed():
    # kombu's own channel code runs with the app's options: body encoding, priority lists
    message = BrokerMessages(app(body_encoding=None, priority_steps=[3, 6], sep=":")).build(
        TaskName.SEND_SMS, "o-1")
    envelope = json.loads(message.body)
    assert json.loads(envelope["body"])[0] == ["o-1"]  # not base64
    assert message.queue == "outbound:6"  # kombu's list for priority 0 with those steps


# Per-message values, fixed so that both ways of building one message can be compared
TASK_ID, REPLY_TO = "9d5b8e0c-6a1f-4b2e-9c3d-1e2f3a4b5c6d", "c1d2e3f4-a5b6-3c7d-8e9f-0a1b2c3d4e5f"
TAG, PUBLISHED = "0f1e2d3c-4b5a-4968-8776-655443322110", 1764612345.25


@pytest.mark.parametrize("options", [{}, {"body_encoding": None},
                                     {"priority_steps": [3, 6], "sep": ":"}])
@pytest.mark.parametrize("payload", [
    {"messageId": "m-1", "msisdn": "447400123456", "text": "hi"},
    {"text": 'quotes " and \\ backslashes, é — ☃ \x00\n\t', "keyword": None, "": ""},
    "o-1",
])
@pytest.mark.parametrize("task", [TaskName.RELAY_INBOUND, TaskName.SEND_SMS])
def test_a_message_from_the_template_is_celerys_byte_for_byte(options, payload, task):
    # `build` fills a template cut once from Celery's and kombu's own message; it must be the
    # very string their code (`compose`, the steps of `app.send_task`) makes for the same values
    builder = BrokerMessages(app(**options))
    template = builder._template(task)
    assert template is not None
    filled = template.fill(TASK_ID, REPLY_TO, TAG, PUBLISHED, [payload])
    assert filled == builder.compose(task, [payload], task_id=TASK_ID, reply_to=REPLY_TO,
                                     delivery_tag=TAG, published=PUBLISHED)


def test_build_uses_the_template_with_new_ids_each_message():
    builder = BrokerMessages(app())
    first, second = (json.loads(builder.build(TaskName.RELAY_INBOUND, {"a": "b"}).body)
                     for _ in "ab")
    assert builder._template(TaskName.RELAY_INBOUND) is not None
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["headers"]["root_id"] == first["properties"]["correlation_id"] \
        == first["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]
    assert json.loads(base64.b64decode(first["body"]))[0] == [{"a": "b"}]


def test_template_ids_are_uuid4s_as_kombu_writes_them():
    """The task id and delivery tag: canonical version-4 RFC 4122 uuids, as `str(uuid4())`."""
    builder = BrokerMessages(app())
    for _ in range(200):
        message = json.loads(builder.build(TaskName.RELAY_INBOUND, {"a": "b"}).body)
        for found in (message["headers"]["id"], message["properties"]["delivery_tag"]):
            parsed = uuid.UUID(found)
            assert str(parsed) == found
            assert parsed.version == 4
            assert parsed.variant == uuid.RFC_4122


def test_no_template_where_a_message_is_not_the_same_each_time():
    # compressed bodies, and a serializer whose arguments are not cut out as JSON's are
    compressed = app()
    compressed.conf.task_compression = "gzip"
    assert BrokerMessages(compressed)._template(TaskName.SEND_SMS) is None
    other = app()
    other.conf.task_serializer = "pickle"
    assert BrokerMessages(other)._template(TaskName.SEND_SMS) is None


@pytest.mark.parametrize("prefix", ["smsproxy:", "x"])
def test_a_global_key_prefix_is_refused_at_start(prefix):
    with pytest.raises(SettingsError, match=r"broker_transport_options\['global_keyprefix'\]"):
        refuse_key_renaming({"global_keyprefix": prefix})
    with pytest.raises(SettingsError, match="global_keyprefix"):
        BrokerMessages(app(global_keyprefix=prefix))


@pytest.mark.parametrize("options", [
    {}, {"global_keyprefix": ""}, {"visibility_timeout": 30, "queue_order_strategy": "sorted"},
    {"unacked_key": "u", "fanout_prefix": True},
])
def test_options_that_keep_the_queue_lists_are_accepted(options):
    refuse_key_renaming(options)


@pytest.mark.parametrize(("first", "second"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://localhost:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://[::1]:6379/0", "redis://localhost/0"),
    ("redis://LOCALHOST", "redis://127.0.0.1:6379/0"),
    ("redis://", "redis://127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/"),
    ("redis://h:6379/2", "redis://h/2"),
    ("redis://H.example:6380/1", "redis://h.example:6380/1"),
    ("redis://h:6379?db=3", "redis://h:6379/3"),
    ("redis://h:6379/1?db=3", "redis://h/3"),  # ?db= wins, as in redis-py
    ("redis://:secret@h/0", "redis://default:secret@h/0"),
    ("redis://u:p%40ss@h/0", "redis://u:p@ss@h/0"),
    ("rediss://h:6380/0", "rediss://h:6380/0?ssl_cert_reqs=required"),
    ("unix:///run/redis.sock?db=2", "redis+socket:///run/redis.sock?virtual_host=2"),
    ("unix:///run/redis.sock", "unix:///run/../run/redis.sock?db=0"),
    ("redis://h/0 ", " redis://h/0"),
    # the same sentinels in any order, loopback spelt either way: the same master
    ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0",
     "redis+sentinel://10.0.0.2:26379,10.0.0.1/mymaster"),
    ("redis+sentinel://:pw@localhost:26379/m/1", "redis+sentinel://:pw@127.0.0.1/m/1"),
])
def test_same_database(first, second):
    assert same_redis_database(first, second)
    assert same_redis_database(second, first)


@pytest.mark.parametrize(("first", "second"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0"),
    ("redis://127.0.0.1/0", "redis://10.0.0.1/0"),
    ("redis://h/0", "rediss://h/0"),
    ("redis://h/0?db=1", "redis://h/0"),
    ("redis://:a@h/0", "redis://:b@h/0"),
    ("redis://:a@h/0", "redis://h/0"),
    ("redis://alice:a@h/0", "redis://bob:a@h/0"),
    ("unix:///run/a.sock", "unix:///run/b.sock"),
    ("unix:///run/a.sock?db=1", "unix:///run/a.sock"),
    ("unix:///run/a.sock", "redis://localhost/0"),
    ("sentinel://h:26379/0", "sentinel://h:26379/0"),
    ("redis+sentinel://h/m/0", "redis+sentinel://h/m/1"),
    ("redis+sentinel://h/m/0", "redis+sentinel://h/other/0"),
    ("redis+sentinel://h/m/0", "redis+sentinel://h,g/m/0"),
    ("redis+sentinel://:a@h/m/0", "redis+sentinel://:b@h/m/0"),
    ("redis+sentinel://h:26379/m/0", "redis://h:26379/0"),
    ("amqp://h//", "redis://h/0"),
])
def test_different_databases(first, second):
    assert not same_redis_database(first, second)
    assert not same_redis_database(second, first)


@pytest.mark.parametrize("url", ["redis://h:port/0", "redis://h/zero", "unix://", "redis://h/0?db=x"])
def test_malformed_redis_url_is_an_error(url):
    with pytest.raises(ValueError, match=r"."):
        same_redis_database(url, "redis://h/0")


def test_queue_of_a_message_stored_by_the_previous_release():
    stored = json.dumps({"properties": {"delivery_info": {"exchange": "", "routing_key": "pool"}}})
    assert legacy_queue_of(stored) == "pool"
    with pytest.raises(ValueError):
        legacy_queue_of(json.dumps({"properties": {"delivery_info": {"routing_key": ""}}}))
