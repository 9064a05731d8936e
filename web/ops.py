"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.wiring import Services
from web.services import publisher, services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    try:
        redis_ok = bool(svc.redis.ping())
    except RedisError:
        redis_ok = False
    broker_ok = publisher().ping()
    ready = redis_ok and broker_ok
    body = {"status": "ready" if ready else "unavailable", "redis": redis_ok, "broker": broker_ok}
    return jsonify(body), 200 if ready else 503


class SharedCounters(Collector):
    """Exports the counters every process keeps in Redis, plus the pool's free capacity."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._svc.counters.snapshot().items()):
            yield CounterMetricFamily(name.replace(".", "_"), f"count of {name}", value=value)
        size = GaugeMetricFamily(
            "smsproxy_pool_numbers", "numbers in the pool", labels=["country", "state"]
        )
        free = GaugeMetricFamily(
            "smsproxy_pool_free_capacity",
            "allocatable numbers: the most live conversations one person can have",
            labels=["country"],
        )
        routes = GaugeMetricFamily(
            "smsproxy_pool_live_routes", "live routes on pool numbers", labels=["country"]
        )
        numbers = self._svc.inventory.numbers()
        for country in self._svc.inventory.countries():
            mine = [n for n in numbers if n.country == country]
            for state in ("active", "draining"):
                size.add_metric([country, state], sum(1 for n in mine if n.state == state))
            free.add_metric([country], self._svc.inventory.size(country))
            routes.add_metric([country], sum(n.routes for n in mine))
        yield size
        yield free
        yield routes


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry()
    registry.register(SharedCounters(services()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
