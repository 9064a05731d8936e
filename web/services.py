"""What the views need, built once per app: the domain services and the door to the broker."""

from __future__ import annotations

from flask import Flask, current_app

from shared.wiring import Services
from web.queue import Publisher

_SERVICES = "smsproxy.services"
_PUBLISHER = "smsproxy.publisher"


def install(app: Flask, built: Services, door: Publisher) -> None:
    app.extensions[_SERVICES] = built
    app.extensions[_PUBLISHER] = door


def services() -> Services:
    found: Services = current_app.extensions[_SERVICES]
    return found


def publisher() -> Publisher:
    found: Publisher = current_app.extensions[_PUBLISHER]
    return found
