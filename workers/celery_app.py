"""The Celery app: `celery -A workers.celery_app worker|beat`."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.app.trace import LOG_SUCCESS
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.consumer import Consumer
from kombu.entity import Queue as KombuQueue
from redis.exceptions import RedisError

from shared.amqp_broker import is_amqp, task_queues
from shared.broker_messages import refuse_key_renaming
from shared.gauges import HEARTBEAT_SECONDS, Heartbeats
from shared.jobs import QUEUE_OF, Queue, TaskName
from shared.logging import LogFormat, configure_logging, reset_log_context
from shared.metrics import TASKS
from shared.sentinel import celery_broker
from shared.settings import Settings
from shared.tracing import configure_tracing
from shared.wiring import WORKER_CONNECT_TIMEOUT_SECONDS, WORKER_SOCKET_TIMEOUT_SECONDS
from workers import runtime
from workers.broker_clients import reuse_channel_clients
from workers.broker_recovery import guard_detached_channels
from workers.schedule import beat_schedule

# How often kombu looks for messages stranded by a dead worker (their visibility timeout past).
RESTORE_SWEEP_SECONDS = 5

log = logging.getLogger(__name__)


def broker_options(
    settings: Settings, sentinel_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The broker transport's options and queues: kombu's Redis transport (behind Sentinel:
    with its master's name, `sentinel_options`), or RabbitMQ's."""
    if is_amqp(settings.broker_url):
        return {
            # every publish of a worker (retries, follow-up jobs) waits for RabbitMQ's confirm
            "broker_transport_options": {"confirm_publish": True},
            # durable quorum queues, declared identically by web and the sweeper
            "task_queues": task_queues(),
            "worker_consumer": f"{__name__}:HeldCountdownConsumer",
        }
    return {
        "broker_transport_options": {
            # A task whose worker died runs again after this; every countdown (retry backoff,
            # multi-part wait) stays far below it, or kombu would hand the waiting message out
            # again and again (kombu#337). Settings enforce that.
            "visibility_timeout": settings.visibility_timeout_seconds,
            # sweep for stranded messages every few seconds, not kombu's default ~100 s
            "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
            "unacked_restore_throttle": 1,
            # the same bounds as the workers' store client (shared/wiring.py)
            "socket_timeout": WORKER_SOCKET_TIMEOUT_SECONDS,
            "socket_connect_timeout": WORKER_CONNECT_TIMEOUT_SECONDS,
            "health_check_interval": 30,
            **(sentinel_options or {}),
        },
        "task_queues": [KombuQueue(q.value) for q in Queue],  # type: ignore[no-untyped-call]
    }


class _HeldCountdowns(logging.Filter):
    """Drops Celery's warning, logged on every countdown publish to a quorum queue behind a
    direct exchange, that native delayed delivery is not used: on purpose, the worker holds a
    countdown's message until it is due (every countdown is far below RabbitMQ's
    consumer_timeout; shared/settings.py checks it), and the warning would fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not supported with native delayed delivery" not in record.getMessage()


class _HeldCountdownSteps(Consumer.Blueprint):  # type: ignore[misc]
    # Celery's native delayed delivery (countdowns parked in 28 levels of dead-lettering
    # queues) needs topic exchanges; our queues use direct ones and the worker holds countdowns
    # instead, so its bootstep would only declare unused exchanges and warn at every start.
    default_steps = [step for step in Consumer.Blueprint.default_steps
                     if not step.endswith(":DelayedDelivery")]


class HeldCountdownConsumer(Consumer):  # type: ignore[misc]
    """The worker's consumer on RabbitMQ, without the native-delayed-delivery bootstep."""

    Blueprint = _HeldCountdownSteps


def make_celery(settings: Settings) -> Celery:
    if is_amqp(settings.broker_url):
        logging.getLogger("celery.app.base").addFilter(_HeldCountdowns())
    # a redis+sentinel:// URL becomes kombu's sentinel:// transport and its master's name
    broker_url, sentinel_options = celery_broker(settings.broker_url)
    app = Celery("smsproxy", broker=broker_url, set_as_current=True, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # at-least-once: acknowledged after the task returns, requeued if its worker dies
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        **broker_options(settings, sentinel_options),
        # Sends wait on Vonage's round trip: threads keep many in flight per process.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        task_default_queue=Queue.CONVERSATIONS.value,
        # The one place that says which queue a task goes to (beat and retries included).
        task_routes={name.value: {"queue": queue.value} for name, queue in QUEUE_OF.items()},
        beat_schedule=beat_schedule(settings),
    )
    # the web writes jobs straight onto the queue lists: no option may move them
    refuse_key_renaming(app.conf.broker_transport_options)
    if settings.log_format is LogFormat.JSON:
        # the banners are printed, not logged: a JSON log must hold only JSON lines
        app.Worker = _without_banner(app.Worker)
        app.Beat = _without_banner(app.Beat)
    return app


def _without_banner(program: Any) -> Any:
    """`celery worker` or `celery beat` as if started with --quiet (which only drops banners)."""

    class Quiet(program):  # type: ignore[misc]
        def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, quiet=True, **kwargs)

    return Quiet


# before any broker connection: a Redis restart must not end the worker (see the module)
guard_detached_channels()
# one Redis client per kombu channel, where kombu builds one per command (see the module)
reuse_channel_clients()
settings = Settings.from_env(os.environ)
if settings.log_format is LogFormat.JSON:
    # from the first line on: Celery warns (running as root, ...) before it sets logging up
    configure_logging(settings.log_level, settings.log_format)
app = make_celery(settings)
runtime.install(runtime.Runtime(
    settings, runtime.CeleryQueue(app, settings, outbox=lambda: runtime.current().services.outbox)
))


class _NoSuccessLines(logging.Filter):
    """Drops Celery's line for each task that succeeded (its retries and failures stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(record.msg != LOG_SUCCESS)


def quiet_task_lines(level: str) -> None:
    """Celery's two INFO lines for every task (`received`, `succeeded in`), off unless the
    level is DEBUG: at volume they were two of every relayed message's three log lines, and
    a measured share of the worker's time (docs/performance.md, section 2, fifth pass). The
    `received` line is written by the consumer's own thread, the one that fetches, hands out
    and acknowledges every task, which all 32 task threads wait on. What they said is in the
    metrics (`smsproxy_tasks_total`, by task, queue and state) and in our own line per send;
    Celery's retry and failure lines stay."""
    debug = logging.getLevelName(level.upper()) == logging.DEBUG
    # the level, not a filter: the consumer's strategy reads it once and then skips the line
    logging.getLogger("celery.worker.strategy").setLevel(
        logging.NOTSET if debug else logging.WARNING)
    trace = logging.getLogger("celery.app.trace")
    for old in [f for f in trace.filters if isinstance(f, _NoSuccessLines)]:
        trace.removeFilter(old)
    if not debug:
        trace.addFilter(_NoSuccessLines())


@setup_logging.connect
def _logging(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format)
    quiet_task_lines(settings.log_level)


# Each task's log lines name it; its thread's next task starts with no ids left over. A task that
# knows its conversation or message binds that too (workers/tasks.py).
@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    reset_log_context(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _task_ended(**_: Any) -> None:
    reset_log_context()


def _trace(service: str) -> None:
    """Traces from this process when OTEL_EXPORTER_OTLP_ENDPOINT is set (shared/tracing.py).

    At worker_init / beat_init, in the process that runs the tasks (the pool is threads: no
    fork follows, which would stop the exporter's thread).
    """
    provider = configure_tracing(settings, service)
    if provider is not None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]


@worker_init.connect
def _worker_tracing(**_: Any) -> None:
    _trace("smsproxy-worker")


@beat_init.connect
def _beat_tracing(**_: Any) -> None:
    _trace("smsproxy-beat")


@task_postrun.connect
def _count_finished(task: Any = None, state: str | None = None, **_: Any) -> None:
    """Tasks finished per queue: with the queue's depth, tells a stuck consumer from a busy
    one (a worker can stay alive and stop consuming: celery#8030)."""
    name = getattr(task, "name", None)
    try:
        queue = QUEUE_OF[TaskName(str(name))].value
    except ValueError:
        return
    labels = {"task": str(name).removeprefix("smsproxy."), "queue": queue,
              "state": (state or "unknown").lower()}
    # buffered: a flush that fails keeps the counts for the next one (HistogramBuffer)
    finished = runtime.current().finished_tasks
    finished.count(TASKS, labels)
    finished.flush_if_due()


_heartbeat_stop = threading.Event()


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Say every HEARTBEAT_SECONDS that this worker lives (smsproxy_workers_alive)."""
    name = str(getattr(sender, "hostname", None) or "worker")
    heartbeats = Heartbeats(runtime.current().services.redis)

    def beat() -> None:
        while True:
            try:
                heartbeats.beat(name)
            except RedisError:
                log.warning("heartbeat not recorded; the store is unavailable")
            if _heartbeat_stop.wait(HEARTBEAT_SECONDS):
                break
        try:
            heartbeats.gone(name)
        except RedisError:
            pass  # it drops out of the count once its heartbeats are old

    threading.Thread(target=beat, name="smsproxy-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _heartbeat_stop.set()


@beat_init.connect
def _maintain_pool_at_start(**_: Any) -> None:
    """A fresh deployment gets its pool now, not one maintenance period later (until then every
    create would fail pool_exhausted). Safe when several schedulers (or a restart) publish it at
    once: the keeper runs under its lock (shared/pool.py), and a run that finds the pool at its
    targets buys nothing."""
    try:
        runtime.current().queue.enqueue(TaskName.MAINTAIN_POOL)
    except Exception as exc:  # noqa: BLE001 (the schedule's next run does it instead)
        log.warning("pool maintenance at start not queued (%s); the schedule will run it",
                    type(exc).__name__)
    else:
        log.info("pool maintenance queued at start")
