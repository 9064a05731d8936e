"""The baseline for the relay benchmark: the product's Celery configuration, one no-op task.

    celery -A bench.noop_app worker   (the same worker arguments as the product's worker)
"""

from __future__ import annotations

import os

import redis

from shared.settings import Settings
from workers.celery_app import make_celery

settings = Settings.from_env(os.environ)
app = make_celery(settings)
_done = redis.Redis.from_url(settings.redis_url)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(n: int) -> None:
    """Does nothing but count itself done, as the relay's sends are counted at the sandbox."""
    _done.incr("bench:noop:done")
