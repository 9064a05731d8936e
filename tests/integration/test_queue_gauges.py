"""Queue depth and oldest age read off what Celery's and our own publishes really write."""

from __future__ import annotations

import json

import pytest
from prometheus_client.core import Metric

from shared.broker_messages import PUBLISHED_AT
from shared.gauges import Gauges
from shared.jobs import TaskName
from shared.pool_inventory import PoolInventory
from shared.settings import Settings
from web.queue import Publisher

pytestmark = pytest.mark.integration


def _gauge(metrics: list[Metric], name: str, queue: str) -> float:
    [family] = [m for m in metrics if m.name == name]
    [value] = [s.value for s in family.samples if s.labels == {"queue": queue}]
    return value


def test_both_publish_paths_stamp_the_job_and_the_oldest_sets_the_age(real_redis, redis_url):
    settings = Settings.from_env({"REDIS_URL": redis_url})
    Publisher(settings).publish(TaskName.SEND_SMS, "o-1")  # Celery's own send_task
    Publisher(settings, real_redis).publish(TaskName.SEND_SMS, "o-2")  # the direct LPUSH
    stamps = [json.loads(m)["properties"][PUBLISHED_AT]
              for m in real_redis.lrange("outbound", 0, -1)]
    newest, oldest = stamps  # LPUSH: the newest is at the head
    assert oldest <= newest
    gauges = Gauges(real_redis, real_redis, PoolInventory(real_redis), {})
    metrics = list(gauges.collect(now=oldest + 90))
    assert _gauge(metrics, "smsproxy_queue_depth", "outbound") == 2
    assert _gauge(metrics, "smsproxy_queue_oldest_age_seconds", "outbound") \
        == pytest.approx(90)
    assert _gauge(metrics, "smsproxy_queue_depth", "inbound") == 0
