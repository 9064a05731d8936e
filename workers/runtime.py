"""What the tasks run against: the services, per-thread clients, and the queue they enqueue on.

One `Runtime` is installed per worker process (`workers/celery_app.py`); a test installs its
own (`install`) with its own Redis, Vonage double and queue, and then calls the tasks.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any, ParamSpec, Protocol, TypeVar

from celery import Celery, Task

from shared.accounts import VonageAccount
from shared.broker_messages import (
    MASKED_ARGSREPR,
    MASKED_KWARGSREPR,
    PUBLISHED_AT,
    BrokerMessages,
    same_redis_database,
)
from shared.jobs import TaskName
from shared.metrics import HistogramBuffer
from shared.outbox import Outbox
from shared.settings import Settings
from shared.vonage_gateway import (
    AccountPorts,
    PooledVonage,
    TimedVonage,
    VonageGateway,
    VonagePort,
)
from shared.wiring import Services

_P = ParamSpec("_P")
_T = TypeVar("_T")

# What monitoring tools (Flower, `celery events`) show of a task's arguments: never numbers.
HIDDEN_ARGS, HIDDEN_KWARGS = MASKED_ARGSREPR, MASKED_KWARGSREPR


class HiddenArgsTask(Task):  # type: ignore[misc]
    """A task whose arguments monitoring tools never see, however it is published: by us, by
    Celery's own retry (which re-publishes through `apply_async`) or by beat."""

    def apply_async(
        self, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any
    ) -> Any:
        options.setdefault("argsrepr", HIDDEN_ARGS if args else "()")
        options.setdefault("kwargsrepr", HIDDEN_KWARGS if kwargs else "{}")
        # every publish (beat's, Celery's retries) says when it was made: queue age
        options[PUBLISHED_AT] = time.time()
        return super().apply_async(args, kwargs, *rest, **options)


class TaskQueue(Protocol):
    """Where tasks enqueue follow-up tasks, by name (routing comes from the app's task_routes).

    `job` names the job in the outbox (shared/outbox.py), which keeps it until the task that
    runs it settles it; sends need none (the owed-sends index covers them).
    """

    def enqueue(
        self,
        task: TaskName,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        job: str | None = None,
    ) -> None: ...


class CeleryQueue:
    """The real queue: Celery's own publish, the arguments hidden from monitoring tools, and
    outbox entries for the jobs that name one."""

    def __init__(self, app: Celery, settings: Settings, outbox: Callable[[], Outbox]) -> None:
        self._app = app
        self._messages = BrokerMessages(app)
        # With the broker in the store's Redis, a job and its entry are written in one step.
        self._direct = same_redis_database(settings.redis_url, settings.broker_url)
        self._outbox = outbox

    def enqueue(
        self,
        task: TaskName,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        job: str | None = None,
    ) -> None:
        if job is not None:
            message = self._messages.build_call(task, args, kwargs, countdown)
            if self._direct:
                self._outbox().publish(job, message, countdown)
                return
            self._outbox().track(job, message, countdown)  # before the publish, never after
        self._app.send_task(
            task.value, args=args, kwargs=kwargs or {}, countdown=countdown,
            argsrepr=HIDDEN_ARGS if args else "()",
            kwargsrepr=HIDDEN_KWARGS if kwargs else "{}", **{PUBLISHED_AT: time.time()},
        )


class FanOut(ThreadPoolExecutor):
    """Threads for the calls one task makes side by side (a create's second Number Insight
    lookup, its second intro), each call in the submitter's context: its log fields and its
    trace go with it."""

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> Future[_T]:
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))


class Runtime:
    """Built lazily in each worker process, after the fork, from the one settings object."""

    def __init__(
        self,
        settings: Settings,
        queue: TaskQueue,
        *,
        services: Services | None = None,
        vonage_factory: Callable[[Settings, VonageAccount | None], VonagePort] = VonageGateway,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self._given = services
        self._vonage_factory = vonage_factory
        self._ports: dict[str, VonagePort] = {}
        self._ports_lock = threading.Lock()
        # Its threads start on first use (after the fork, in a prefork child); their calls
        # borrow pooled Vonage clients through `vonage`, as the task threads' do. As many as
        # the task threads: each task holds at most one at a time.
        self.fan_out = FanOut(max(1, settings.worker_concurrency),
                              thread_name_prefix="smsproxy-fan-out")

    @cached_property
    def services(self) -> Services:
        return self._given or Services.from_settings(self.settings)

    @property
    def finished_tasks(self) -> HistogramBuffer:
        """This process's count of finished tasks, written about once a second in one
        pipeline rather than a round trip after every task (shared/metrics.py): the buffer
        the relays are counted in too, so that one flush writes both."""
        return self.services.tallies

    def vonage(self, api_key: str | None = None) -> VonagePort:
        """The Vonage port of an account (the primary by default): a pool of SDK clients, each
        used by one call at a time (the SDK's client is not safe across concurrent calls)."""
        accounts = self.settings.vonage_accounts
        account = accounts.get(api_key) if api_key else None
        account = account or accounts.primary
        name = account.api_key if account else ""
        with self._ports_lock:
            port = self._ports.get(name)
            if port is None:
                pooled = PooledVonage(lambda: self._vonage_factory(self.settings, account))
                port = self._ports[name] = TimedVonage(pooled, self.services.tallies)
        return port

    def accounts(self) -> AccountPorts:
        """Every account's port for this thread, by API key: what sends and the pool take."""
        return _RuntimePorts(self)


class _RuntimePorts:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def port(self, api_key: str) -> VonagePort:
        return self._runtime.vonage(api_key)


_installed: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one the tasks of this process use."""
    global _installed
    _installed = runtime


def current() -> Runtime:
    if _installed is None:
        raise RuntimeError("no runtime installed: import workers.celery_app first")
    return _installed
