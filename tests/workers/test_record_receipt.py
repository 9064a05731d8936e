"""record_receipt: a delivery receipt completes its send's record and settles its job."""

from shared.outbound import intro_ids
from tests.workers.conftest import A, run_task
from workers import tasks


def receipt(client_ref, message_id="v1", status="delivered", **extra):
    return {"messageId": message_id, "status": status, "err-code": "0",
            "client-ref": client_ref, "msisdn": A, **extra}


def sent_intro(worker):
    worker.start()
    intro = intro_ids(worker.conversation().id)[0]
    run_task(tasks.send_sms, intro)
    return intro


def test_a_receipt_marks_its_send_delivered_and_settles_its_job(worker):
    intro = sent_intro(worker)
    job = worker.keep_in_outbox("receipt", "v1:delivered")
    run_task(tasks.record_receipt, receipt(intro))
    assert worker.services.messages.outbound_state(intro) == "delivered"
    assert not worker.in_outbox(job)
    assert worker.counter("smsproxy.receipts.unmatched") == 0


def test_a_failed_receipt_marks_its_send_failed(worker):
    intro = sent_intro(worker)
    run_task(tasks.record_receipt, receipt(intro, status="failed", **{"err-code": "6"}))
    assert worker.services.messages.outbound_state(intro) == "failed"


def test_a_receipt_for_no_send_of_ours_is_counted_and_settled(worker):
    job = worker.keep_in_outbox("receipt", "v9:delivered")
    run_task(tasks.record_receipt, receipt("relay-unknown", message_id="v9"))
    run_task(tasks.record_receipt, receipt(None, message_id="v9"))
    assert worker.counter("smsproxy.receipts.unmatched") == 2
    assert not worker.in_outbox(job)


def test_a_malformed_receipt_is_dropped(worker):
    intro = sent_intro(worker)
    payload = receipt(intro)
    del payload["status"]
    assert run_task(tasks.record_receipt, payload) is None  # no exception, no retry
    assert worker.services.messages.outbound_state(intro) == "submitted"
    assert worker.counter("smsproxy.receipts.unmatched") == 0


def test_a_receipt_web_no_longer_accepts_leaves_the_outbox(worker):
    # queued before a stricter validation was deployed: dropped, and not re-published for ever
    intro = sent_intro(worker)
    job = worker.keep_in_outbox("receipt", "v1:delivered\x00")
    assert run_task(tasks.record_receipt, receipt(intro, status="delivered\x00")) is None
    assert worker.services.messages.outbound_state(intro) == "submitted"
    assert not worker.in_outbox(job)
