"""relay_inbound and flush_concat: reassemble, decide, send at once or enqueue, settle the job."""

from shared.domain import MessageKind
from shared.jobs import TaskName
from shared.reassembly import MISSING_PART_MARKER
from tests.workers.conftest import POOL, STRANGER, A, B, inbound_payload, run_task
from workers import tasks

REPLY = "This conversation has ended."


def test_a_routed_text_is_sent_at_once_with_inline_sends(worker):
    conversation = worker.start()
    proxy_a, proxy_b = (p.proxy_number for p in conversation.participants)
    run_task(tasks.relay_inbound, inbound_payload(A, proxy_a, "m1", "hello"))
    assert worker.vonage.sent == [
        {"from": proxy_b, "to": B, "text": "hello", "client_ref": "relay-m1"}]
    assert worker.services.messages.outbound_state("relay-m1") == "submitted"
    assert worker.queue.enqueued == []


def test_a_routed_text_is_enqueued_without_inline_sends(make_worker):
    worker = make_worker(SMSPROXY_INLINE_SENDS="false")
    conversation = worker.start()
    run_task(tasks.relay_inbound,
             inbound_payload(A, conversation.participants[0].proxy_number, "m1", "hello"))
    assert worker.vonage.sent == []
    assert worker.queue.enqueued == [(TaskName.SEND_SMS, ("relay-m1",), {}, None)]
    assert worker.services.messages.outbound("relay-m1").text == "hello"


def test_the_first_part_schedules_the_flush_and_the_last_part_relays(make_worker):
    worker = make_worker(SMSPROXY_CONCAT_TIMEOUT_SECONDS="7")
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    run_task(tasks.relay_inbound,
             inbound_payload(A, to, "p2", "world", concat_ref="r1", concat_part=2, concat_total=2))
    (flush, kwargs, countdown), = worker.queue.of(TaskName.FLUSH_CONCAT)
    assert countdown == 7 and kwargs == {}
    assert worker.vonage.sent == []
    run_task(tasks.relay_inbound,
             inbound_payload(A, to, "p1", "hello ", concat_ref="r1", concat_part=1,
                             concat_total=2))
    assert [s["text"] for s in worker.vonage.sent] == ["hello world"]
    assert len(worker.queue.of(TaskName.FLUSH_CONCAT)) == 1  # only the first part schedules one
    run_task(tasks.flush_concat, *flush)  # the flush, after the timeout, finds nothing left
    assert len(worker.vonage.sent) == 1
    assert worker.counter("smsproxy.inbound.concat_incomplete") == 0


def test_the_flush_relays_what_arrived_with_a_marker_for_what_did_not(worker):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    for part, text in ((1, "hello "), (3, "!")):
        run_task(tasks.relay_inbound,
                 inbound_payload(A, to, f"p{part}", text, concat_ref="r2", concat_part=part,
                                 concat_total=3))
    (flush, _, _), = worker.queue.of(TaskName.FLUSH_CONCAT)  # one flush per message
    assert worker.vonage.sent == []
    run_task(tasks.flush_concat, *flush)
    assert [s["text"] for s in worker.vonage.sent] == [f"hello {MISSING_PART_MARKER}!"]
    assert worker.counter("smsproxy.inbound.concat_incomplete") == 1
    run_task(tasks.flush_concat, *flush)  # a redelivered flush relays nothing more
    assert len(worker.vonage.sent) == 1


def test_a_part_redelivered_after_its_message_was_relayed_is_a_duplicate(worker):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    parts = [inbound_payload(A, to, f"p{n}", text, concat_ref="r4", concat_part=n,
                             concat_total=2) for n, text in ((1, "hello "), (2, "world"))]
    for payload in parts:
        run_task(tasks.relay_inbound, payload)
    job = worker.keep_in_outbox("inbound", "p2")
    run_task(tasks.relay_inbound, parts[1])  # the broker hands the last part out again
    assert [s["text"] for s in worker.vonage.sent] == ["hello world"]
    assert len(worker.queue.of(TaskName.FLUSH_CONCAT)) == 1  # and opens no new message
    assert not worker.in_outbox(job)


def test_a_late_part_is_recorded_not_relayed(worker):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    first, late = (inbound_payload(A, to, f"p{n}", text, concat_ref="r5", concat_part=n,
                                   concat_total=2) for n, text in ((1, "hello "), (2, "world")))
    run_task(tasks.relay_inbound, first)
    (flush, _, _), = worker.queue.of(TaskName.FLUSH_CONCAT)
    run_task(tasks.flush_concat, *flush)
    job = worker.keep_in_outbox("inbound", "p2")
    run_task(tasks.relay_inbound, late)
    assert [s["text"] for s in worker.vonage.sent] == [f"hello {MISSING_PART_MARKER}"]
    assert worker.counter("smsproxy.inbound.concat_late") == 1
    trail = worker.services.messages.trail(conversation.id)
    assert "p2" in [e.id for e in trail if e.record == "in"]
    assert not worker.in_outbox(job)


def test_an_unrouted_text_gets_the_out_of_session_reply(make_worker):
    worker = make_worker(SMSPROXY_OUT_OF_SESSION_REPLY=REPLY)
    run_task(tasks.relay_inbound, inbound_payload(STRANGER, POOL[1], "m1", "anyone?"))
    assert worker.vonage.sent == [
        {"from": POOL[1], "to": STRANGER, "text": REPLY, "client_ref": "oos-m1"}]
    assert worker.services.messages.outbound_state("oos-m1") == "submitted"
    assert worker.queue.of(TaskName.NOTIFY_OUT_OF_SESSION) == []
    assert worker.counter("smsproxy.inbound.unrouted") == 1


def test_an_unrouted_text_is_reported_to_the_out_of_session_callback(make_worker):
    worker = make_worker(SMSPROXY_OUT_OF_SESSION_CALLBACK_URL="https://market.example/oos",
                         SMSPROXY_CALLBACK_SECRET="s3cret")
    run_task(tasks.relay_inbound, inbound_payload(STRANGER, POOL[1], "m1", "anyone?"))
    assert worker.queue.enqueued == [
        (TaskName.NOTIFY_OUT_OF_SESSION,
         ({"from": STRANGER, "to": POOL[1], "message_id": "m1"},), {}, None)]
    assert worker.vonage.sent == []  # no reply configured


def test_an_unrouted_text_without_reply_or_callback_is_dropped(worker):
    run_task(tasks.relay_inbound, inbound_payload(STRANGER, POOL[1], "m1", "anyone?"))
    assert worker.vonage.sent == [] and worker.queue.enqueued == []
    assert worker.counter("smsproxy.inbound.unrouted") == 1


def test_a_malformed_payload_is_dropped(worker):
    conversation = worker.start()
    payload = inbound_payload(A, conversation.participants[0].proxy_number, "m1", "hello")
    del payload["msisdn"]
    assert run_task(tasks.relay_inbound, payload) is None  # no exception, no retry
    assert worker.vonage.sent == [] and worker.queue.enqueued == []
    assert worker.services.messages.outbound("relay-m1") is None


def test_a_payload_web_no_longer_accepts_leaves_the_outbox(worker):
    # queued before a stricter validation was deployed: dropped, and not re-published for ever
    conversation = worker.start()
    job = worker.keep_in_outbox("inbound", "X:text")
    payload = inbound_payload(A, conversation.participants[0].proxy_number, "X:text", "hello")
    assert run_task(tasks.relay_inbound, payload) is None
    assert worker.vonage.sent == [] and not worker.in_outbox(job)


def test_the_webhook_job_is_settled_from_the_outbox(worker):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    handled, other = worker.keep_in_outbox("inbound", "m1"), worker.keep_in_outbox("inbound", "m2")
    run_task(tasks.relay_inbound, inbound_payload(A, to, "m1", "hello"))
    assert not worker.in_outbox(handled)
    assert worker.in_outbox(other)  # only its own job


def test_each_part_of_a_multi_part_message_settles_its_own_job(worker):
    conversation = worker.start()
    to = conversation.participants[0].proxy_number
    first = worker.keep_in_outbox("inbound", "p1")
    run_task(tasks.relay_inbound,
             inbound_payload(A, to, "p1", "hello ", concat_ref="r3", concat_part=1,
                             concat_total=2))
    assert not worker.in_outbox(first)  # kept in the parts hash now, and flushed if need be


def test_a_relay_is_recorded_once_however_often_its_job_runs(worker):
    conversation = worker.start()
    payload = inbound_payload(A, conversation.participants[0].proxy_number, "m1", "hello")
    run_task(tasks.relay_inbound, payload)
    run_task(tasks.relay_inbound, payload)
    assert len(worker.vonage.sent) == 1
    assert worker.counter("smsproxy.inbound.relayed") == 1
    kinds = [e.kind for e in worker.services.messages.trail(conversation.id)
             if e.record == "out"]
    assert kinds == [MessageKind.RELAY.value]
