"""Allocation is race-safe: 50 concurrent creates for one person, 5 processes, a real Redis."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
import redis

from shared.domain import Conversation, ConversationStatus, Participant
from shared.settings import Settings
from shared.wiring import Services
from tests.doubles import FakeVonage

pytestmark = pytest.mark.integration

PERSON = "447400100000"
PROCESSES, PER_PROCESS = 5, 10


def _create_many(redis_url: str, worker: int, barrier, results) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = Settings.from_env({"SMSPROXY_API_TOKENS": "t-0123456789abcdef0123456789abcdef"})
    svc = Services.from_settings(settings, client)
    conversations = svc.conversations
    ids = []
    for i in range(PER_PROCESS):
        conversation_id = f"{worker:02d}{i:030d}"
        svc.conversation_store.add(Conversation(
            id=conversation_id,
            participants=(Participant(PERSON), Participant(f"4474002{worker:02d}{i:03d}")),
            status=ConversationStatus.PENDING, created_at=1.0, ttl_seconds=3600,
        ))
        ids.append(conversation_id)
    barrier.wait()  # all processes allocate at the same moment
    for conversation_id in ids:
        conversations.establish(conversation_id, FakeVonage())
    results.put(ids)


def test_fifty_concurrent_creates_never_reuse_a_persons_proxy(real_redis, redis_url):
    svc = Services.from_settings(Settings.from_env({}), real_redis)
    for n in range(60):
        svc.inventory.add(f"4477009{n:05d}", "GB")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_create_many, args=(redis_url, w, barrier, results))
               for w in range(PROCESSES)]
    for process in workers:
        process.start()
    ids = [i for _ in workers for i in results.get(timeout=60)]
    for process in workers:
        process.join(timeout=30)
        assert process.exitcode == 0

    conversations = [svc.conversation_store.get(i) for i in ids]
    assert all(c.status is ConversationStatus.ACTIVE for c in conversations)
    proxies = [c.participants[0].proxy_number for c in conversations]
    assert len(proxies) == 50 and len(set(proxies)) == 50, Counter(proxies).most_common(3)
    for conversation in conversations:
        person, other = conversation.participants
        assert svc.routes.find(person.number, person.proxy_number) == conversation.id
        assert svc.routes.find(other.number, other.proxy_number) == conversation.id
    # every live route is counted once against its number
    assert sum(n.routes for n in svc.inventory.numbers("GB")) == 100
