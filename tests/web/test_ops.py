"""Operations endpoints: the metrics token; a /readyz that costs no broker connection per hit."""

from __future__ import annotations

import hmac

import pytest

from web import ops, queue
from web.app import create_app
from web.queue import BROKER_CHECK_SECONDS, Publisher

TOKEN = "metrics-" + "m" * 32
GUARDED = ("/metrics", "/readyz")


def test_without_a_token_the_operations_endpoints_stay_open(client):
    for path in (*GUARDED, "/healthz"):
        assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer "}, {"Authorization": TOKEN},
     {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN}x"},
     {"Authorization": "Bearer test-token"}],  # an API token is not the metrics token
)
def test_with_a_token_metrics_and_readyz_need_it(make_client, headers):
    guarded = make_client(SMSPROXY_METRICS_TOKEN=TOKEN)
    for path in GUARDED:
        response = guarded.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_right_token_opens_them_and_healthz_needs_none(make_client):
    guarded = make_client(SMSPROXY_METRICS_TOKEN=TOKEN)
    for header in (f"Bearer {TOKEN}", f"bearer  {TOKEN} "):
        assert guarded.get("/readyz", headers={"Authorization": header}).json["status"] == "ready"
        metrics = guarded.get("/metrics", headers={"Authorization": header})
        assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    assert guarded.get("/healthz").json == {"status": "ok"}


def test_the_token_is_compared_in_constant_time(make_client, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def compare_digest(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ops.hmac, "compare_digest", compare_digest)
    guarded = make_client(SMSPROXY_METRICS_TOKEN=TOKEN)
    assert guarded.get("/metrics", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert compared == [(b"guess", TOKEN.encode())]


class FakeBroker:
    """Stands in for connecting to a broker apart from the store: counts the connections."""

    def __init__(self) -> None:
        self.answers = True
        self.opened = 0

    def connect(self) -> bool:
        self.opened += 1
        return self.answers


@pytest.fixture
def broker(monkeypatch):
    fake = FakeBroker()
    monkeypatch.setattr(Publisher, "_connect_once", lambda self: fake.connect())
    return fake


def _app(fake_redis, settings):
    return create_app(settings, redis_client=fake_redis,
                      publisher=Publisher(settings, fake_redis)).test_client()


def test_readyz_with_the_broker_in_the_store_is_one_ping_and_no_connection(
    fake_redis, make_settings, broker, monkeypatch
):
    pings = []
    real_ping = fake_redis.ping
    monkeypatch.setattr(fake_redis, "ping", lambda: pings.append(1) or real_ping())
    client = _app(fake_redis, make_settings())
    for _ in range(20):
        assert client.get("/readyz").json == {"status": "ready", "redis": True, "broker": True}
    assert len(pings) == 20 and broker.opened == 0


def test_readyz_with_a_broker_apart_opens_one_connection_per_interval(
    fake_redis, make_settings, broker, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(queue.time, "monotonic", lambda: clock[0])
    client = _app(fake_redis, make_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/5"))
    for _ in range(50):
        assert client.get("/readyz").status_code == 200
    assert broker.opened == 1
    clock[0] += BROKER_CHECK_SECONDS
    assert client.get("/readyz").status_code == 200
    assert broker.opened == 2


def test_readyz_reports_a_broker_apart_that_is_down_then_up_again(
    fake_redis, make_settings, broker, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(queue.time, "monotonic", lambda: clock[0])
    settings = make_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/5")
    broker.answers = False
    client = _app(fake_redis, settings)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["broker"] is False
    broker.answers = True
    assert client.get("/readyz").status_code == 503  # the answer is reused for the interval
    clock[0] += BROKER_CHECK_SECONDS
    assert client.get("/readyz").status_code == 200
