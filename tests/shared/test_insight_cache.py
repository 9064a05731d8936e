"""The Number Insight cache: a field of the person's routes hash, good for a bounded time."""

import pytest

from shared import insight_cache
from shared.insight_cache import InsightCache
from shared.keys import Keys

KEYS = Keys()
NUMBER = "447400100001"


def test_an_answer_is_reused_within_its_life_and_not_after(fake_redis, monkeypatch):
    cache = InsightCache(fake_redis, ttl_seconds=100)
    monkeypatch.setattr(insight_cache, "now", lambda: 1_000_000.0)
    assert cache.country(NUMBER) is None
    cache.remember(NUMBER, "GB")
    assert cache.country(NUMBER) == "GB"
    monkeypatch.setattr(insight_cache, "now", lambda: 1_000_101.0)
    assert cache.country(NUMBER) is None  # older than the cache's life: asked again


def test_a_hash_made_for_an_answer_expires_with_it_and_a_routes_hash_keeps_its_life(fake_redis):
    cache = InsightCache(fake_redis, ttl_seconds=100)
    cache.remember(NUMBER, "GB")
    assert 0 < fake_redis.ttl(KEYS.routes(NUMBER)) <= 100
    other = "447400100002"
    fake_redis.hset(KEYS.routes(other), "447700900100", "c1")  # a live route, no expiry
    cache.remember(other, "GB")
    assert fake_redis.ttl(KEYS.routes(other)) == -1  # never shortened to the answer's life
    fake_redis.expire(KEYS.routes(other), 10_000)
    cache.remember(other, "FR")
    assert fake_redis.ttl(KEYS.routes(other)) > 100 and cache.country(other) == "FR"


@pytest.mark.parametrize("old_layout", [False, True])
def test_forgetting_an_answer_deletes_it_in_either_layout(fake_redis, old_layout):
    cache = InsightCache(fake_redis, ttl_seconds=100)
    if old_layout:
        fake_redis.set(KEYS.insight(NUMBER), "GB", ex=100)  # a key per number, as before
    else:
        cache.remember(NUMBER, "GB")
    assert cache.forget(NUMBER) == 1
    assert not fake_redis.keys("*")
    assert cache.forget(NUMBER) == 0
