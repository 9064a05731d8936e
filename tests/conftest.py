"""Shared fixtures: settings, fakeredis for unit tests, a private redis-server for the rest."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from devtools.redis_server import RedisServer
from shared.settings import Settings
from shared.wiring import Services

SettingsFactory = Callable[..., Settings]

# The one /v1 client of the test settings (tests/web/conftest.py's AUTH carries its token).
TEST_CLIENT = "marketplace"
TEST_TOKEN = "test-token-0123456789abcdef0123456789"


def build_settings(**env: str) -> Settings:
    """Test settings: a token, sandbox credentials, a base URL, and whatever `env` adds.

    Unsigned webhooks are allowed explicitly: most web tests post them; the signature tests
    set VONAGE_SIGNATURE_SECRET and sign.
    """
    base = {
        "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS": "true",
        "SMSPROXY_API_TOKENS": f"{TEST_CLIENT}:{TEST_TOKEN}",
        "VONAGE_API_KEY": "sandbox-key",
        "VONAGE_API_SECRET": "sandbox-secret",
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
    }
    base.update(env)
    return Settings.from_env(base)


@pytest.fixture
def make_settings() -> SettingsFactory:
    return build_settings


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def fake_redis() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of our own (or REDIS_URL when the caller provides one)."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    if not os.environ.get("REDIS_URL"):
        client.flushdb()  # our own server: everything in it was made by this test run
    yield client
    client.close()


@pytest.fixture
def make_services(
    fake_redis: redis.Redis, make_settings: SettingsFactory
) -> Callable[..., Services]:
    """Every store and service of one process over fakeredis, with settings from `env`."""

    def build(**env: str) -> Services:
        return Services.from_settings(make_settings(**env), fake_redis)

    return build
