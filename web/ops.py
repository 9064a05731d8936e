"""Operations endpoints: liveness, readiness and Prometheus metrics.

They share the webhook listener, which faces the internet: with SMSPROXY_METRICS_TOKEN set,
/metrics (volumes, pool sizes) and /readyz (which reaches Redis and the broker) answer only a
bearer of that token. /healthz stays open: it reveals nothing and touches nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.wiring import Services
from web.errors import error_response
from web.services import publisher, services

bp = Blueprint("ops", __name__)

_OPEN = frozenset({"ops.healthz"})


@bp.before_request
def _require_metrics_token() -> Response | None:
    expected = services().settings.metrics_token
    if expected is None or request.endpoint in _OPEN:
        return None
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right
    if scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        return None
    response = error_response(401, "unauthorized", "missing or invalid bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="smsproxy-operations"'
    return response


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
    door = publisher()
    # One PING on the store's pooled client answers for a broker that is the same Redis; a
    # broker apart is checked at most once every few seconds (Publisher.ping), not per hit.
    broker_ok = redis_ok if door.broker_is_store else door.ping()
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
