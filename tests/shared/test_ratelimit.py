import pytest

from shared.ratelimit import RateLimiter


def test_burst_then_wait(real_redis):
    limiter = RateLimiter(real_redis, "k", rate=10, burst=3)
    assert [limiter.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take()
    assert 0 < wait <= 0.1 + 1e-6


def test_unlimited_when_rate_is_zero(fake_redis):
    limiter = RateLimiter(fake_redis, "k", rate=0, burst=1)
    assert all(limiter.take() == 0.0 for _ in range(100))


@pytest.mark.parametrize("rate", [5, 50])
def test_refills_at_the_rate(real_redis, rate):
    import time

    limiter = RateLimiter(real_redis, f"r{rate}", rate=rate, burst=1)
    assert limiter.take() == 0.0
    assert limiter.take() > 0
    time.sleep(1.0 / rate + 0.01)
    assert limiter.take() == 0.0


def test_waiters_are_given_turns_one_token_apart(real_redis):
    from shared.keys import Keys

    limiter = RateLimiter(real_redis, "turns", rate=1, burst=1)
    assert limiter.take() == 0.0
    turns = []
    for _ in range(4):
        assert 0 < limiter.take()
        turns.append(float(real_redis.hget(Keys().rate_bucket("turns"), "turn")))
    # each later waiter comes back one token (1 s at this rate) after the one before it,
    # instead of all of them when the next token is due
    assert [round(later - earlier, 6) for earlier, later in zip(turns, turns[1:],
                                                                 strict=False)] == [1.0] * 3


def test_no_turn_is_handed_out_beyond_the_longest_wait(real_redis):
    from shared.keys import Keys

    limiter = RateLimiter(real_redis, "horizon", rate=1, burst=1, max_wait=2.5)
    assert limiter.take() == 0.0
    assert 0 < limiter.take() <= 1.0 and 1.0 < limiter.take() <= 2.0
    # the third waiter's turn would be 3 s off: it is told to ask again in 2.5 s, turn-less
    assert limiter.take() == 2.5
    turn = float(real_redis.hget(Keys().rate_bucket("horizon"), "turn"))
    assert limiter.take() == 2.5
    assert float(real_redis.hget(Keys().rate_bucket("horizon"), "turn")) == turn
