"""What the views need, built once per app: the domain services and the door to the broker."""

from __future__ import annotations

from flask import Flask, current_app

from shared.metrics import HistogramBuffer
from shared.wiring import Services
from web.queue import Publisher

_SERVICES = "smsproxy.services"
_PUBLISHER = "smsproxy.publisher"
_TIMINGS = "smsproxy.timings"


def install(app: Flask, built: Services, door: Publisher) -> None:
    app.extensions[_SERVICES] = built
    app.extensions[_PUBLISHER] = door
    app.extensions[_TIMINGS] = HistogramBuffer(built.counters)


def timings() -> HistogramBuffer:
    """The webhook timings of this process, buffered (written at most about once a second)."""
    found: HistogramBuffer = current_app.extensions[_TIMINGS]
    return found


def flush_timings(app: Flask) -> None:
    """Write this process's buffered timings now (/metrics, before it reads; tests)."""
    buffer: HistogramBuffer = app.extensions[_TIMINGS]
    buffer.flush()


def services() -> Services:
    found: Services = current_app.extensions[_SERVICES]
    return found


def publisher() -> Publisher:
    found: Publisher = current_app.extensions[_PUBLISHER]
    return found
