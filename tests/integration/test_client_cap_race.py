"""Concurrent creates at a client's live-conversation cap cannot overshoot it (real Redis)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from shared.keys import Keys
from tests.conftest import TEST_CLIENT
from tests.doubles import FakePublisher
from tests.web.conftest import AUTH
from web.app import create_app

pytestmark = pytest.mark.integration

CAP, CONCURRENT = 5, 16


def test_concurrent_creates_at_the_cap_make_exactly_the_cap(real_redis, make_settings):
    settings = make_settings(SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS=str(CAP),
                             SMSPROXY_API_RATE_LIMIT="none")
    publisher = FakePublisher()
    app = create_app(settings, redis_client=real_redis, publisher=publisher)
    barrier = threading.Barrier(CONCURRENT)
    statuses: list[int] = []
    lock = threading.Lock()

    def create(index: int) -> None:
        client = app.test_client()
        body = {"participants": [{"number": "+447400111111"},
                                 {"number": f"+4474002{index:05d}"}]}
        barrier.wait()
        response = client.post("/v1/conversations", json=body, headers=AUTH)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert Counter(statuses) == {202: CAP, 429: CONCURRENT - CAP}
    assert real_redis.get(Keys().client_live_count(TEST_CLIENT)) == str(CAP)
    assert real_redis.zcard(Keys().client_conversations(TEST_CLIENT)) == CAP
    assert len(publisher.published) == CAP
