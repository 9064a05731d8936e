"""Celery's per-task INFO lines (`received`, `succeeded in`) are off at INFO and back at DEBUG;
its retry and failure lines stay at every level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.app.trace import LOG_FAILURE, LOG_RECEIVED, LOG_RETRY, LOG_SUCCESS

from workers.celery_app import quiet_task_lines

STRATEGY, TRACE = "celery.worker.strategy", "celery.app.trace"


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in (STRATEGY, TRACE)]
    saved = [(log.level, list(log.filters)) for log in loggers]
    root = logging.getLogger().level
    yield
    logging.getLogger().setLevel(root)
    for log, (level, filters) in zip(loggers, saved, strict=True):
        log.setLevel(level)
        log.filters[:] = filters


def _passes(name: str, fmt: str, level: int = logging.INFO) -> bool:
    """Whether a line Celery logs this way reaches the handlers (its level and filters)."""
    log = logging.getLogger(name)
    if not log.isEnabledFor(level):
        return False
    record = log.makeRecord(name, level, __file__, 1, fmt, ({"name": "t", "id": "1"},), None)
    return bool(log.filter(record))


def test_at_info_the_per_task_lines_are_off_and_retries_stay() -> None:
    logging.getLogger().setLevel(logging.INFO)
    quiet_task_lines("INFO")
    assert not _passes(STRATEGY, LOG_RECEIVED)
    assert not _passes(TRACE, LOG_SUCCESS)
    assert _passes(TRACE, LOG_RETRY)
    assert _passes(TRACE, LOG_FAILURE, logging.ERROR)
    assert _passes(STRATEGY, "unknown task", logging.ERROR)


def test_at_debug_every_line_is_back() -> None:
    quiet_task_lines("INFO")
    logging.getLogger().setLevel(logging.DEBUG)
    quiet_task_lines("debug")  # configured again, as a restart at another level would
    assert _passes(STRATEGY, LOG_RECEIVED)
    assert _passes(TRACE, LOG_SUCCESS)
    assert _passes(TRACE, LOG_RETRY)


def test_configured_twice_filters_once() -> None:
    quiet_task_lines("INFO")
    quiet_task_lines("INFO")
    assert len(logging.getLogger(TRACE).filters) == 1
