"""The baselines for the relay benchmarks: the product's Celery configuration, a no-op task and
a task that only waits out the provider's latency (what a send would be with no cost of its own).

    celery -A bench.noop_app worker   (the same worker arguments as the product's worker)
"""

from __future__ import annotations

import os
import time

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


@app.task(name="bench.sleep_send")  # type: ignore[untyped-decorator]
def sleep_send(seconds: float) -> None:
    """A send that costs nothing but the provider's latency: the pool's concurrency limit.

    time.sleep yields to the other threads (and, under the gevent pool, which patches it, to
    the other greenlets), as a send waiting on its socket does."""
    time.sleep(seconds)
    _done.incr("bench:noop:done")
