"""notify_callback and notify_out_of_session: signed events POSTed to a real local receiver."""

import pytest
import redis
from celery.exceptions import Retry

from shared.metrics import Counters
from tests.sandbox.webhook_receiver import Receiver
from tests.workers.conftest import POOL, STRANGER, run_task
from workers import tasks


@pytest.fixture
def receiver():
    served = Receiver()
    yield served
    served.close()


# The receiver is plain http on 127.0.0.1: allowed as an operator would allow a local one.
LOCAL_RECEIVER = {"SMSPROXY_ALLOW_HTTP_CALLBACKS": "true",
                  "SMSPROXY_CALLBACK_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture
def worker(make_worker, receiver):
    return make_worker(SMSPROXY_CALLBACK_SECRET="s3cret",
                       SMSPROXY_OUT_OF_SESSION_CALLBACK_URL=f"{receiver.base_url}/oos",
                       **LOCAL_RECEIVER)


def active(worker, receiver):
    """An active conversation whose callbacks go to the receiver; the status payload."""
    conversation = worker.start(callback_url=f"{receiver.base_url}/events")
    return conversation, {"conversation_id": conversation.id, "event": "active"}


def test_the_event_is_posted_and_counted(worker, receiver):
    conversation, payload = active(worker, receiver)
    run_task(tasks.notify_callback, payload)
    (got,) = receiver.received
    assert (got.method, got.path, got.content_type) == ("POST", "/events", "application/json")
    assert got.params["id"] == f"{conversation.id}:active"
    assert got.params["type"] == "conversation.active"
    assert got.params["conversation"]["status"] == "active"
    assert worker.counter("smsproxy.callbacks.delivered") == 1


def test_a_refused_event_is_retried_with_backoff(worker, receiver):
    _, payload = active(worker, receiver)
    receiver.answers = [503]
    with pytest.raises(Retry) as info:
        run_task(tasks.notify_callback, payload, retries=2)
    assert 0 < info.value.when <= worker.settings.max_backoff_seconds
    assert info.value.sig.args == (payload,)
    assert worker.counter("smsproxy.callbacks.retried") == 1
    run_task(tasks.notify_callback, payload, retries=3)  # the receiver is back
    assert len(receiver.received) == 2
    assert worker.counter("smsproxy.callbacks.delivered") == 1


def test_an_unreachable_receiver_is_retried(worker, receiver):
    conversation, payload = active(worker, receiver)
    receiver.close()  # nobody listens on that port any more
    with pytest.raises(Retry):
        run_task(tasks.notify_callback, payload)
    assert worker.counter("smsproxy.callbacks.retried") == 1


def test_the_event_is_dropped_after_its_retries(worker, receiver):
    _, payload = active(worker, receiver)
    receiver.answers = [500]
    run_task(tasks.notify_callback, payload, retries=tasks.CALLBACK_MAX_RETRIES)  # no Retry
    assert len(receiver.received) == 1
    assert worker.counter("smsproxy.callbacks.dropped") == 1
    assert worker.counter("smsproxy.callbacks.retried") == 0
    assert worker.counter("smsproxy.callbacks.delivered") == 0


def test_nothing_is_posted_for_an_unknown_conversation_or_one_without_a_url(worker, receiver):
    run_task(tasks.notify_callback, {"conversation_id": "f" * 32, "event": "active"})
    conversation = worker.start()
    run_task(tasks.notify_callback, {"conversation_id": conversation.id, "event": "active"})
    assert receiver.received == []
    assert worker.counter("smsproxy.callbacks.delivered") == 0


def test_nothing_is_posted_without_a_callback_secret(make_worker, receiver):
    worker = make_worker(**LOCAL_RECEIVER)  # a conversation stored before the secret was removed
    conversation = worker.start(callback_url=f"{receiver.base_url}/events")
    run_task(tasks.notify_callback, {"conversation_id": conversation.id, "event": "active"})
    assert receiver.received == []


def test_out_of_session_event_is_posted(worker, receiver):
    run_task(tasks.notify_out_of_session,
             {"from": STRANGER, "to": POOL[1], "message_id": "m1"})
    (got,) = receiver.received
    assert got.path == "/oos"
    assert got.params == {"id": "out_of_session:m1", "type": "message.out_of_session",
                          "from": f"+{STRANGER}", "to": f"+{POOL[1]}", "message_id": "m1"}
    assert worker.counter("smsproxy.callbacks.delivered") == 1


def test_out_of_session_event_is_dropped_after_its_retries(worker, receiver):
    receiver.answers = [502]
    payload = {"from": STRANGER, "to": POOL[1], "message_id": "m1"}
    with pytest.raises(Retry):
        run_task(tasks.notify_out_of_session, payload)
    receiver.answers = [502]
    run_task(tasks.notify_out_of_session, payload, retries=tasks.CALLBACK_MAX_RETRIES)
    assert worker.counter("smsproxy.callbacks.dropped") == 1


def test_out_of_session_event_retries_through_a_redis_error(worker, receiver, monkeypatch):
    def broken(*_, **__):
        raise redis.ConnectionError("Redis is restarting")

    monkeypatch.setattr(Counters, "incr", broken)
    with pytest.raises(Retry) as info:
        run_task(tasks.notify_out_of_session,
                 {"from": STRANGER, "to": POOL[1], "message_id": "m1"})
    assert isinstance(info.value.exc, redis.ConnectionError)


def test_a_stop_publishes_the_participant_event_and_the_task_posts_it(worker, receiver):
    from shared.jobs import TaskName
    from tests.workers.conftest import A, inbound_payload

    conversation = worker.start(callback_url=f"{receiver.base_url}/events")
    proxy_a = conversation.participants[0].proxy_number
    run_task(tasks.relay_inbound, inbound_payload(A, proxy_a, "stop-1", "STOP"))
    sent = {(s["to"], s["client_ref"]) for s in worker.vonage.sent}
    assert (A, "optout-stop-1") in sent  # the confirmation, from the number texted
    ((payload,), _, _), = worker.queue.of(TaskName.NOTIFY_PARTICIPANT)
    assert payload == {"conversation_id": conversation.id, "event": "participant.opted_out",
                       "message_id": "stop-1", "participant": "0"}
    assert A not in str(payload)  # no number in a task's arguments

    run_task(tasks.notify_participant, payload)
    (got,) = receiver.received
    assert got.params["id"] == "participant.opted_out:stop-1"
    assert got.params["type"] == "participant.opted_out"
    assert got.params["participant"] == {"number": f"+{A}", "proxy_number": f"+{proxy_a}"}
    assert [p["opted_out"] for p in got.params["conversation"]["participants"]] == [True, False]


def test_no_participant_event_without_a_callback_url(worker, receiver):
    from shared.jobs import TaskName
    from tests.workers.conftest import A, inbound_payload

    conversation = worker.start()
    run_task(tasks.relay_inbound,
             inbound_payload(A, conversation.participants[0].proxy_number, "stop-1", "STOP"))
    ((payload,), _, _), = worker.queue.of(TaskName.NOTIFY_PARTICIPANT)
    run_task(tasks.notify_participant, payload)
    assert receiver.received == []
