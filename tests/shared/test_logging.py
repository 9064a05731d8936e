import io
import json
import logging
import threading

import pytest

from shared.logging import (
    ContextFilter,
    LogFormat,
    QueryScrubFilter,
    bind_log_context,
    formatter,
    log_context,
    reset_log_context,
)
from shared.phone import mask
from shared.redaction import mask_digit_runs, scrub_query_strings
from shared.settings import Settings, SettingsError


@pytest.fixture
def capture():
    """A handler like ours (formatter and context filter) on a logger of its own."""

    def build(log_format: LogFormat) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter(log_format))
        handler.addFilter(ContextFilter())
        logger = logging.getLogger(f"test.logging.{log_format}")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        return logger, stream

    yield build
    reset_log_context()


def test_json_lines_carry_the_bound_ids_and_the_masked_number(capture):
    logger, stream = capture(LogFormat.JSON)
    reset_log_context(task_id="t-1", task_name="relay_inbound")
    bind_log_context(conversation_id="c-1", message_id=None)
    logger.info("sent %s to %s", "m-1", mask("447700900001"))
    line = json.loads(stream.getvalue())
    assert line["message"] == "sent m-1 to ***0001"
    assert line["level"] == "INFO" and line["logger"] == "test.logging.json"
    assert {k: line[k] for k in ("task_id", "task_name", "conversation_id")} == {
        "task_id": "t-1", "task_name": "relay_inbound", "conversation_id": "c-1"}
    assert "message_id" not in line  # None is not bound
    assert "time" in line and "process" in line


def test_an_exception_stays_on_one_json_line(capture):
    logger, stream = capture(LogFormat.JSON)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    [line] = stream.getvalue().splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exc_info"]


def test_celery_data_extra_is_not_a_field(capture):
    logger, stream = capture(LogFormat.JSON)
    logger.info("Task %(name)s received", {"name": "x"}, extra={"data": {"args": "secret"}})
    assert "data" not in json.loads(stream.getvalue())


def test_text_stays_the_default_format(capture):
    assert Settings.from_env({}).log_format is LogFormat.TEXT
    logger, stream = capture(LogFormat.TEXT)
    reset_log_context(task_id="t-1")
    logger.info("hello")
    assert stream.getvalue().rstrip().endswith("INFO test.logging.text hello")


@pytest.mark.parametrize("raw", ["xml", "JSONL", "1"])
def test_an_invalid_format_is_refused_naming_the_variable(raw):
    with pytest.raises(SettingsError, match="SMSPROXY_LOG_FORMAT"):
        Settings.from_env({"SMSPROXY_LOG_FORMAT": raw})


def test_json_is_accepted_in_any_case():
    assert Settings.from_env({"SMSPROXY_LOG_FORMAT": " JSON "}).log_format is LogFormat.JSON


def test_reset_forgets_what_the_last_unit_of_work_bound():
    reset_log_context(task_id="a", conversation_id="c")
    reset_log_context(task_id="b")
    assert dict(log_context()) == {"task_id": "b"}
    with pytest.raises(ValueError, match="not a log context field"):
        bind_log_context(body="no")
    reset_log_context()


def test_threads_do_not_see_each_others_ids():
    reset_log_context(task_id="main")
    seen: list[dict[str, str]] = []
    thread = threading.Thread(target=lambda: seen.append(dict(log_context())))
    thread.start()
    thread.join()
    assert seen == [{}]
    reset_log_context()


def test_query_strings_lose_their_values_in_messages():
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1,
                               "Error handling request %s", ("/webhooks/inbound-sms?msisdn="
                               "447700900001&text=Hi%20there",), None)
    QueryScrubFilter().filter(record)
    assert record.getMessage() == "Error handling request /webhooks/inbound-sms?msisdn=…&text=…"


def test_redaction_of_free_text():
    assert scrub_query_strings("GET /x?a=1&b HTTP/1.1") == "GET /x?a=…&… HTTP/1.1"
    assert scrub_query_strings("who is this? fine") == "who is this? fine"
    assert mask_digit_runs("to +447700900001 at 10:30, 3 parts, id 0A0000000123ABCD1") \
        == "to ***0001 at 10:30, 3 parts, id 0A0000000123ABCD1"
