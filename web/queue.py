"""The one door from web/ to the broker: publish a job by task name, bounded in time."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from shared.jobs import QUEUE_OF, TaskName
from shared.settings import Settings

log = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """The broker did not take the job in time; the caller answers 503 so the sender retries."""


class Publisher:
    """Sends tasks by name (web/ never imports workers/), failing fast when the broker is down."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.publish_timeout_seconds
        self._app = Celery("smsproxy-web", broker=settings.broker_url, set_as_current=False)
        self._app.conf.update(
            broker_connection_retry=False,
            broker_connection_timeout=timeout,
            broker_transport_options={
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                # kombu's own reconnect loop would otherwise keep a webhook waiting for minutes
                "max_retries": 1,
            },
            task_serializer="json",
        )
        # Spread the allowance over at most two quick retries of a publish.
        self._retry_policy = {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": min(0.2, timeout / 4),
            "interval_max": min(0.5, timeout / 2),
        }

    def publish(self, task: TaskName, payload: Any = None) -> None:
        """Put one job on its queue; raises QueueUnavailable if the broker did not take it.

        `payload` is the task's one argument (None for tasks that take none).
        """
        try:
            self._app.send_task(
                task.value,
                args=[] if payload is None else [payload],
                queue=QUEUE_OF[task].value,
                retry=True,
                retry_policy=self._retry_policy,
            )
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            log.warning("broker unavailable for %s: %s", task.value, type(exc).__name__)
            raise QueueUnavailable(str(task)) from exc

    def ping(self) -> bool:
        """Whether the broker answers now (for /readyz)."""
        try:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=1)
            return True
        except (OperationalError, KombuError, RedisError, OSError):
            return False
