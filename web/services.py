"""What the views need, built once per app: the domain services and the door to the broker."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from flask import Flask, current_app

from shared.metrics import HistogramBuffer
from shared.wiring import Services
from web.queue import Publisher

_SERVICES = "smsproxy.services"
_PUBLISHER = "smsproxy.publisher"
_TIMINGS = "smsproxy.timings"

_T = TypeVar("_T")


def install(app: Flask, built: Services, door: Publisher) -> None:
    app.extensions[_SERVICES] = built
    app.extensions[_PUBLISHER] = door
    app.extensions[_TIMINGS] = HistogramBuffer(built.counters)


def unproxied(proxy: _T) -> _T:
    """The object behind one of Flask's context proxies (`request`, `current_app`, `g`).

    Each attribute read through a proxy looks its context up again; a webhook's view made
    ~18 such reads, a share of its CPU (docs/performance.md, benchmark 1). A view that reads
    often takes the object once."""
    found: _T = cast(Any, proxy)._get_current_object()
    return found


def services_of(app: Flask) -> Services:
    found: Services = app.extensions[_SERVICES]
    return found


def publisher_of(app: Flask) -> Publisher:
    found: Publisher = app.extensions[_PUBLISHER]
    return found


def timings_of(app: Flask) -> HistogramBuffer:
    found: HistogramBuffer = app.extensions[_TIMINGS]
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
