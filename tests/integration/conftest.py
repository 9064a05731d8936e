"""Fixtures of the integration tests that start servers of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.redis_server import RedisServer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "store").start()
    try:
        yield server
    finally:
        server.stop()
