"""The one wall clock the domain uses, so that tests and callers agree on it."""

from __future__ import annotations

import time


def now() -> float:
    """Wall-clock seconds since the epoch, to the millisecond: a conversation stores its times
    (and its listing entries theirs) as written, and a millisecond is all they need; every
    digit past it costs a byte per live conversation and time (docs/performance.md, 4)."""
    return round(time.time(), 3)


def after(at: float, seconds: float) -> float:
    """`at` plus `seconds`, to the millisecond (the sum of two floats can print with more
    digits than either had)."""
    return round(at + seconds, 3)
