"""A worker's world for task tests: its own runtime over fakeredis, FakeVonage and FakeQueue.

Tests call the task functions themselves (no broker, no `task_always_eager`): `run_task` runs a
task's body under a request like a worker's, so `self.request.retries` is what the test says
and `self.retry` raises Celery's `Retry` carrying the countdown and the signature a worker
would publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import redis

from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.outbox import job_name, outbox_entry
from shared.settings import Settings
from shared.vonage_gateway import OwnedNumber
from shared.wiring import Services
from tests.doubles import FakeQueue, FlakyInsightVonage
from workers import runtime, tasks
from workers.runtime import Runtime

A, B = "447400100001", "447400100002"
STRANGER = "447400100009"
POOL = ("447700900100", "447700900101")
KEYS = Keys()


def run_task(task: Any, *args: Any, retries: int = 0, **kwargs: Any) -> Any:
    """Run `task`'s body as a worker runs it on its `retries`-th retry.

    `called_directly=False` makes `self.retry` build the retry a worker would publish;
    `is_eager=True` makes it raise that as `celery.exceptions.Retry` instead of publishing.
    (`task.apply` would run the retry at once, recursively, ignoring its countdown.)
    """
    task.push_request(
        id=uuid.uuid4().hex, task=task.name, args=list(args), kwargs=kwargs, retries=retries,
        called_directly=False, is_eager=True, delivery_info={"is_eager": True},
    )
    try:
        return task.run(*args, **kwargs)
    finally:
        task.pop_request()


@dataclass
class Worker:
    """One worker process: its runtime, and the doubles and Redis behind it."""

    runtime: Runtime
    redis: redis.Redis
    vonage: FlakyInsightVonage
    queue: FakeQueue

    @property
    def services(self) -> Services:
        return self.runtime.services

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def counter(self, name: str) -> int:
        self.services.tallies.flush()  # this process's buffered counts, as /metrics would
        return self.services.counters.snapshot().get(name, 0)

    def add_conversation(self, conversation_id: str = "c" * 32,
                         callback_url: str | None = None, numbers: tuple[str, str] = (A, B)) -> str:
        """A pending conversation between `numbers`, as the API stores it."""
        self.services.conversation_store.add(Conversation(
            id=conversation_id,
            participants=(Participant(numbers[0], display_name="Rider"),
                          Participant(numbers[1], display_name="Driver")),
            status=ConversationStatus.PENDING,
            created_at=1.0,
            ttl_seconds=3600,
            callback_url=callback_url,
        ))
        return conversation_id

    def conversation(self, conversation_id: str = "c" * 32) -> Conversation:
        found = self.services.conversation_store.get(conversation_id)
        assert found is not None
        return found

    def start(self, callback_url: str | None = None) -> Conversation:
        """An active conversation between A and B, established by the create task; the
        queue is emptied of what that enqueued. Its intros stay owed and unsent (the create
        runs as with SMSPROXY_INLINE_SENDS=false), for the tests that send them."""
        conversation_id = self.add_conversation(callback_url=callback_url)
        settings = self.runtime.settings
        self.runtime.settings = replace(settings, inline_sends=False)
        try:
            run_task(tasks.create_conversation, conversation_id)
        finally:
            self.runtime.settings = settings
        self.queue.enqueued.clear()
        active = self.conversation(conversation_id)
        assert active.status is ConversationStatus.ACTIVE
        return active

    def keep_in_outbox(self, kind: str, message_id: str) -> str:
        """Put a webhook's job in the outbox as the web's enqueue does; its job name."""
        name = job_name(kind, message_id)
        self.redis.hset(KEYS.pending_jobs(), name, outbox_entry("inbound", "{}"))
        self.redis.zadd(KEYS.pending_due(), {name: 2e9})
        return name

    def in_outbox(self, name: str) -> bool:
        return bool(self.redis.hexists(KEYS.pending_jobs(), name)) or (
            self.redis.zscore(KEYS.pending_due(), name) is not None
        )


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def make_worker(fake_redis, make_settings) -> Iterator[WorkerFactory]:
    """Build a worker with settings from `env` and install its runtime; the runtime that was
    installed before is put back after the test."""
    previous = runtime._installed

    def build(**env: str) -> Worker:
        settings = make_settings(**{"SMSPROXY_SEND_RATE_PER_SECOND": "0", **env})
        vonage = FlakyInsightVonage()
        for number in POOL:
            vonage.owned.append(OwnedNumber(number, "GB", settings.inbound_url))
        services = Services.from_settings(settings, fake_redis)
        for number in POOL:
            services.inventory.add(number, "GB")
        queue = FakeQueue()
        rt = Runtime(settings, queue, services=services, vonage_factory=lambda *_: vonage)
        runtime.install(rt)
        return Worker(rt, fake_redis, vonage, queue)

    yield build
    runtime._installed = previous


@pytest.fixture
def worker(make_worker: WorkerFactory) -> Worker:
    return make_worker()


def inbound_payload(sender: str, to: str, message_id: str, text: str,
                    **concat: object) -> dict[str, str]:
    """An inbound-SMS job's payload, as the web enqueues it."""
    payload = {"msisdn": sender, "to": to, "messageId": message_id, "text": text,
               "type": "text"}
    if concat:
        payload["concat"] = "true"
        payload.update({k.replace("_", "-"): str(v) for k, v in concat.items()})
    return payload
