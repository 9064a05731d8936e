"""Redaction of what may hold personal data in free text: URL query strings and long digit runs.

Used where text leaves the process uninspected by our own code: gunicorn's log lines (the
request line of a GET webhook is `/webhooks/inbound-sms?msisdn=...&to=...&text=...`) and span
attributes the OpenTelemetry instrumentations record (URLs, exception messages).
"""

from __future__ import annotations

import re

from shared.phone import mask

REDACTED = "…"
# A query string: from `?` to the end of the URL (whitespace, a fragment or a quote ends it).
_QUERY = re.compile(r"\?([^\s#\"'<>]+)")
# A run of digits as long as a phone number (E.164 has at most 15), with or without `+`; shorter
# runs (counts, ports, status codes, times) are left alone.
_DIGIT_RUN = re.compile(r"(?<![\w.])\+?\d{7,15}(?![\w.])")


def scrub_query_strings(text: str) -> str:
    """Every query string's values replaced, its parameter names kept (`?msisdn=…&text=…`)."""
    if "?" not in text:
        return text
    return _QUERY.sub(_redact_query, text)


def _redact_query(match: re.Match[str]) -> str:
    items = []
    for item in match.group(1).split("&"):
        name, sep, _ = item.partition("=")
        items.append(f"{mask_digit_runs(name)}={REDACTED}" if sep else REDACTED)
    return "?" + "&".join(items)


def mask_digit_runs(text: str) -> str:
    """Every phone-number-long run of digits masked as logs mask numbers (the last four)."""
    return _DIGIT_RUN.sub(lambda match: mask(match.group(0)), text)
