"""Personal-data-free logging set up once per process: text, or one JSON object per line.

Numbers are masked where they are logged (`shared.phone.mask`: the last four digits) and bodies
are never logged. What a line is about (the task, the conversation, the message) comes from a
context variable that the task or view which knows it sets (`bind_log_context`), and a filter on
our handler copies it onto every record, whichever logger wrote it (Celery's, the SDKs', ours).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from enum import StrEnum
from types import MappingProxyType

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from shared.redaction import scrub_query_strings

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Field order of a JSON line; the context fields follow when they are known.
_JSON_FIELDS = ("asctime", "levelname", "name", "process", "message")
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
CONTEXT_FIELDS = ("task_id", "task_name", "conversation_id", "message_id")
_CONTEXT_FIELD_SET = frozenset(CONTEXT_FIELDS)
# Record attributes a JSON line never shows as fields of their own: the standard ones (rendered
# through the fields above, or not at all), and Celery's `data` extra (a copy of what its
# message already says, arguments included).
_NOT_FIELDS = (*RESERVED_ATTRS, "taskName", "data")

# The SDKs' own loggers print numbers and request bodies at debug and info.
_QUIET_LOGGERS = ("vonage", "vonage_number_insight", "urllib3", "werkzeug")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("smsproxy_log_context", default=_EMPTY)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def parse_log_format(raw: str) -> LogFormat:
    """`text` or `json` (any case); ValueError otherwise."""
    try:
        return LogFormat(raw.strip().lower())
    except ValueError:
        raise ValueError("must be text or json") from None


def bind_log_context(**fields: str | None) -> None:
    """Add ids to what this thread (or task, or request) logs from here on; None is skipped."""
    known = {name: value for name, value in fields.items() if value}
    # a set comparison, no set built per call: every webhook binds its message id
    if not known.keys() <= _CONTEXT_FIELD_SET:
        raise ValueError(f"not a log context field: {sorted(known.keys() - _CONTEXT_FIELD_SET)}")
    if known:
        _context.set(MappingProxyType({**_context.get(), **known}))


def reset_log_context(**fields: str | None) -> None:
    """Start a new unit of work (a task, a request): forget every id, then bind `fields`."""
    _context.set(_EMPTY)
    if fields:  # every request resets with none
        bind_log_context(**fields)


def log_context() -> Mapping[str, str]:
    """The ids bound in this context."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (a record's own `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class QueryScrubFilter(logging.Filter):
    """Replaces the values of URL query strings in a message (gunicorn's own lines name the
    request URI, and a GET webhook's query holds msisdn, to and text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub_query_strings(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of every handler of ours (and of gunicorn's, web/gunicorn_logging.py)."""
    if log_format is LogFormat.JSON:
        return JsonFormatter(
            list(_JSON_FIELDS), rename_fields=dict(_JSON_NAMES), reserved_attrs=list(_NOT_FIELDS),
            json_ensure_ascii=False,
        )
    return logging.Formatter(_TEXT_FORMAT)


def configure_logging(level: str, log_format: LogFormat = LogFormat.TEXT) -> None:
    """Log to stderr at `level` in `log_format`; the SDKs' chatty loggers stay quiet."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_smsproxy", False)]
    handler = ours[0] if ours else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    if not ours:
        handler.addFilter(ContextFilter())
        handler._smsproxy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # A JSON log must hold only JSON lines: warnings go through logging instead of stderr.
    logging.captureWarnings(log_format is LogFormat.JSON)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

