"""Concurrent calls of one script sharing round trips (shared/script_batch.py), on a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.exceptions

from shared.script_batch import NotSent, ScriptBatch

# Counts its calls, and answers with its argument; an argument "fail" makes it raise.
SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('failed on purpose') end
redis.call('INCR', KEYS[1])
return 'got ' .. ARGV[1]
"""
QUEUED = 6


class Held(redis.Redis):
    """A client whose lone calls (not pipelines) wait for `release` once `hold` is set."""

    hold: threading.Event | None = None
    held: threading.Event = threading.Event()
    fail_with: BaseException | None = None

    def evalsha(self, *args: Any) -> Any:  # type: ignore[override]
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.held.set()
            hold.wait(10)
            if self.fail_with is not None:
                raise self.fail_with
        return super().evalsha(*args)


@pytest.fixture
def client(redis_url: str, real_redis: redis.Redis) -> Iterator[Held]:
    held = Held.from_url(redis_url, decode_responses=True, socket_timeout=5)
    held.held = threading.Event()
    yield held
    held.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(QUEUED + 2) as executor:
        yield executor


def warm(client: redis.Redis, connections: int = 2) -> None:
    """Connections opened (and their handshakes read) before the reads are counted."""
    pool = client.connection_pool
    opened = [pool.get_connection() for _ in range(connections)]
    for connection in opened:
        pool.release(connection)


def reads(client: redis.Redis) -> int:
    """Redis's count of reads from its clients: a pipeline arrives in one."""
    return int(client.info("stats")["total_reads_processed"])


def queue_behind_one(batch: ScriptBatch, client: Held, pool: ThreadPoolExecutor,
                     first: str = "first", then: Callable[[int], str] = str
                     ) -> tuple[Future[Any], list[Future[Any]], threading.Event]:
    """One call held in flight, and QUEUED calls queued behind it; set the event to go on."""
    release = client.hold = threading.Event()
    leader = pool.submit(batch, ["n"], [first])
    assert client.held.wait(5)
    followers = [pool.submit(batch, ["n"], [then(i)]) for i in range(QUEUED)]
    deadline = time.monotonic() + 5
    while len(batch._queued) < QUEUED:  # noqa: SLF001 (the test waits for the queue to form)
        assert time.monotonic() < deadline, "the calls did not queue"
        time.sleep(0.005)
    return leader, followers, release


def test_a_lone_call_is_one_evalsha(client: Held, real_redis: redis.Redis) -> None:
    batch = ScriptBatch(client, SCRIPT)
    assert batch(["n"], ["a"]) == "got a"  # loads the script
    before = reads(real_redis)
    assert batch(["n"], ["b"]) == "got b"
    assert reads(real_redis) - before == 2  # the call, and the INFO that counted it
    assert real_redis.get("n") == "2"


def test_calls_queued_behind_one_in_flight_go_in_one_round_trip(
    client: Held, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    batch(["n"], ["load"])
    warm(client)
    leader, followers, release = queue_behind_one(batch, client, pool)
    before = reads(real_redis)
    release.set()
    assert leader.result(5) == "got first"
    # each caller has its own reply, not another's
    assert [f.result(5) for f in followers] == [f"got {i}" for i in range(QUEUED)]
    assert reads(real_redis) - before == 3  # the held call, one pipeline of six, this INFO
    assert real_redis.get("n") == str(QUEUED + 2)


def test_one_calls_error_is_its_own(
    client: Held, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    leader, followers, release = queue_behind_one(
        batch, client, pool, then=lambda i: "fail" if i == 2 else str(i))
    release.set()
    assert leader.result(5) == "got first"
    for i, future in enumerate(followers):
        if i == 2:
            with pytest.raises(redis.exceptions.ResponseError, match="failed on purpose"):
                future.result(5)
        else:
            assert future.result(5) == f"got {i}"
    assert real_redis.get("n") == str(QUEUED)


def test_a_flushed_script_cache_is_reloaded_for_lone_and_batched_calls(
    client: Held, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    real_redis.script_flush()
    assert batch(["n"], ["a"]) == "got a"
    leader, followers, release = queue_behind_one(batch, client, pool)
    real_redis.script_flush()  # after the held call's load: the pipeline finds none
    release.set()
    leader.result(5)
    assert [f.result(5) for f in followers] == [f"got {i}" for i in range(QUEUED)]
    assert real_redis.get("n") == str(QUEUED + 2)  # each ran once


def test_calls_behind_a_timed_out_one_fail_at_once_unsent(
    client: Held, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    client.fail_with = redis.exceptions.TimeoutError("Timeout reading from socket")
    leader, followers, release = queue_behind_one(batch, client, pool)
    release.set()
    with pytest.raises(redis.exceptions.TimeoutError):
        leader.result(5)
    for future in followers:
        with pytest.raises(NotSent):
            future.result(5)
    client.fail_with = None
    assert real_redis.get("n") is None  # none of them ran
    assert batch(["n"], ["after"]) == "got after"  # nothing left in flight


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_any_failure_in_flight_wakes_the_queue_and_moves_it_on(
    client: Held, real_redis: redis.Redis, pool: ThreadPoolExecutor, failure: BaseException
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    client.fail_with = failure
    leader, followers, release = queue_behind_one(batch, client, pool)
    release.set()
    with pytest.raises(type(failure)):
        leader.result(5)
    # the queued calls were not held back by the failure: sent as the next batch
    assert [f.result(5) for f in followers] == [f"got {i}" for i in range(QUEUED)]
    client.fail_with = None
    assert batch(["n"], ["after"]) == "got after"


def test_a_connection_error_reaches_every_caller_of_its_batch_as_its_own(
    client: Held, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    leader, followers, release = queue_behind_one(batch, client, pool)

    def refused(self: redis.client.Pipeline, *args: Any, **options: Any) -> Any:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(redis.client.Pipeline, "execute", refused)
    release.set()
    assert leader.result(5) == "got first"
    errors = []
    for future in followers:
        with pytest.raises(redis.exceptions.ConnectionError, match="refused") as caught:
            future.result(5)
        errors.append(caught.value)
    monkeypatch.undo()
    assert len({id(e) for e in errors}) == QUEUED  # an instance each: tracebacks apart
    assert batch(["n"], ["after"]) == "got after"


def test_many_threads_each_get_their_own_reply(client: Held, real_redis: redis.Redis) -> None:
    batch = ScriptBatch(client, SCRIPT)
    with ThreadPoolExecutor(16) as executor:
        replies = list(executor.map(lambda n: batch(["n"], [str(n)]), range(2000)))
    assert replies == [f"got {n}" for n in range(2000)]
    assert real_redis.get("n") == "2000"
