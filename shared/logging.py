"""Structured, personal-data-free logging set up once per process."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; the SDKs' chatty loggers (which print numbers) stay quiet."""
    root = logging.getLogger()
    if not any(getattr(h, "_smsproxy", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._smsproxy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("vonage", "vonage_number_insight", "urllib3", "werkzeug"):
        logging.getLogger(name).setLevel(logging.ERROR)
