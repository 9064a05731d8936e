"""The one wall clock the domain uses, so that tests and callers agree on it."""

from __future__ import annotations

import time


def now() -> float:
    """Wall-clock seconds since the epoch."""
    return time.time()
