"""Fixtures of the integration tests that start servers of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.redis_server import RedisServer
from shared.wiring import Services

# The pool numbers of `pooled_services`.
POOL = ("447700900100", "447700900101")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "store").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pooled_services(real_redis, make_settings) -> Services:
    """Services over the test's real Redis, with POOL in the GB pool and no send rate limit."""
    services = Services.from_settings(
        make_settings(SMSPROXY_SEND_RATE_PER_SECOND="0"), real_redis)
    for number in POOL:
        services.inventory.add(number, "GB")
    return services
