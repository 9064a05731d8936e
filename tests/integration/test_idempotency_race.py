"""Identical concurrent creates with one Idempotency-Key make exactly one conversation."""

from __future__ import annotations

import threading
import time

import pytest

from shared.idempotency import IdempotencyKeys
from shared.keys import Keys
from tests.conftest import TEST_CLIENT
from tests.doubles import FakePublisher
from tests.web.conftest import AUTH
from web.app import create_app

pytestmark = pytest.mark.integration

BODY = {"participants": [{"number": "+447400111111"}, {"number": "+447400222222"}]}
CONCURRENT = 8


@pytest.mark.parametrize("slow_winner", [False, True])
def test_concurrent_identical_creates_make_one_conversation(
    real_redis, make_settings, monkeypatch, slow_winner
):
    if slow_winner:
        # The request that binds the key is the slowest to go on: the others must still find
        # its conversation rather than make their own.
        remember = IdempotencyKeys.remember

        def slow_remember(self, *args, **kwargs):
            earlier = remember(self, *args, **kwargs)
            if earlier is None:
                time.sleep(0.3)
            return earlier

        monkeypatch.setattr(IdempotencyKeys, "remember", slow_remember)
    publisher = FakePublisher()
    app = create_app(make_settings(), redis_client=real_redis, publisher=publisher)
    barrier = threading.Barrier(CONCURRENT)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def create() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/v1/conversations", json=BODY,
                               headers={**AUTH, "Idempotency-Key": "order-1"})
        with lock:
            answers.append((response.status_code, response.json["id"]))

    threads = [threading.Thread(target=create) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == CONCURRENT
    assert {status for status, _ in answers} == {202}
    assert len({conversation_id for _, conversation_id in answers}) == 1
    assert real_redis.zcard(Keys().client_conversations(TEST_CLIENT)) == 1
    assert real_redis.zcard(Keys().pending_conversations()) == 1
    assert len(publisher.published) == 1
