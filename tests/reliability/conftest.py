"""The reliability suite: real processes, one injected fault per scenario, exact counts."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability: fault injection through real processes (gunicorn, Celery workers, "
        "redis-server, the sandbox): nothing lost, nothing doubled",
    )
