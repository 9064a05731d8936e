"""Operations endpoints: liveness, readiness and Prometheus metrics.

They share the webhook listener, which faces the internet: with SMSPROXY_METRICS_TOKEN set,
/metrics (volumes, pool sizes) and /readyz (which reaches Redis and the broker) answer only a
bearer of that token. /healthz stays open: it reveals nothing and touches nothing.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.gauges import Gauges, store_up
from shared.wiring import Services
from web.errors import error_response
from web.services import flush_timings, publisher, services

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

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


class SharedMetrics(Collector):
    """Exports the deployment's counters and histograms (kept in Redis by every process) and
    the gauges read at scrape time; a store that does not answer is said, not a 500."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        gauges = Gauges(svc.redis, svc.outbox.queues_client, svc.inventory,
                        svc.settings.pool_targets, depths=publisher().queue_depths())
        try:
            # read all before yielding: a failure halfway must not leave half an exposition
            readings = [*svc.counters.families(), *gauges.collect()]
        except RedisError as exc:
            log.warning("/metrics could not read the store: %s", type(exc).__name__)
            yield store_up(False)
            return
        yield store_up(True)
        yield from readings


@bp.get("/metrics")
def metrics() -> Response:
    flush_timings(current_app)  # this process's own webhook timings, not a second late
    registry = CollectorRegistry()
    registry.register(SharedMetrics(services()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
