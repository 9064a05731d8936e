"""Concurrent calls of one script sharing round trips (shared/script_batch.py), on a real Redis
(and, for the WAIT of SMSPROXY_MIN_REPLICAS_ACKED, a real replica of it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.exceptions

from devtools.redis_server import RedisServer
from shared.script_batch import NotSent, ScriptBatch, _Call

# Counts its calls, and answers with its argument; an argument "fail" makes it raise.
SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('failed on purpose') end
redis.call('INCR', KEYS[1])
return 'got ' .. ARGV[1]
"""
QUEUED = 6


class Gate:
    """Holds the next round trip (its command not yet written) until `hold` is set, then lets it
    go on, or fail with `fail_with`; `refusing` refuses every other round trip meanwhile."""

    def __init__(self) -> None:
        self.hold: threading.Event | None = None
        self.held = threading.Event()
        self.fail_with: BaseException | None = None
        self.refusing = False


class HeldConnection(redis.connection.Connection):
    gate = Gate()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        gate = self.gate
        if gate.hold is not None:
            hold, gate.hold = gate.hold, None
            gate.held.set()
            hold.wait(10)
            if gate.fail_with is not None:
                raise gate.fail_with
        elif gate.refusing:
            raise redis.exceptions.ConnectionError("Connection refused")
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def later() -> float:
    """A deadline no test reaches."""
    return time.monotonic() + 30


@pytest.fixture
def gate() -> Iterator[Gate]:
    HeldConnection.gate = Gate()
    yield HeldConnection.gate
    HeldConnection.gate = Gate()


@pytest.fixture
def client(redis_url: str, real_redis: redis.Redis, gate: Gate) -> Iterator[redis.Redis]:
    """A client as shared/wiring.py makes them (one retry on a refused connection), its round
    trips held at the gate."""
    retry = redis.retry.Retry(redis.backoff.NoBackoff(), 1,
                              supported_errors=(redis.exceptions.ConnectionError,))
    held = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5,
                                retry=retry, connection_class=HeldConnection)
    yield held
    held.close()


@pytest.fixture(scope="module")
def replica(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A replica of the test Redis, synced: a WAIT for one replica is answered at once."""
    master = urlsplit(redis_url)
    server = RedisServer(Path(tmp_path_factory.mktemp("replica")), appendonly=False,
                         extra_args=("--replicaof", master.hostname or "127.0.0.1",
                                     str(master.port)))
    server.start()
    client = redis.Redis(port=server.port)
    deadline = time.monotonic() + 10
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.02)
    client.close()
    yield server
    server.stop()


def waits(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


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


def queue_behind_one(batch: ScriptBatch, gate: Gate, pool: ThreadPoolExecutor,
                     first: str = "first", then: Callable[[int], str] = str
                     ) -> tuple[Future[Any], list[Future[Any]], threading.Event]:
    """One call held in flight, and QUEUED calls queued behind it; set the event to go on."""
    batch(["warm"], ["up"], later())  # its connection made: the hold falls on the call's own
    release = gate.hold = threading.Event()
    leader = pool.submit(batch, ["n"], [first], later())
    assert gate.held.wait(5)
    followers = [pool.submit(batch, ["n"], [then(i)], later()) for i in range(QUEUED)]
    deadline = time.monotonic() + 5
    while len(batch._queued) < QUEUED:  # noqa: SLF001 (the test waits for the queue to form)
        assert time.monotonic() < deadline, "the calls did not queue"
        time.sleep(0.005)
    return leader, followers, release


def test_a_lone_call_is_one_evalsha(client: redis.Redis, real_redis: redis.Redis) -> None:
    batch = ScriptBatch(client, SCRIPT)
    assert batch(["n"], ["a"], later()) == ("got a", 0)  # loads the script
    before = reads(real_redis)
    assert batch(["n"], ["b"], later()) == ("got b", 0)
    assert reads(real_redis) - before == 2  # the call, and the INFO that counted it
    assert real_redis.get("n") == "2"


def test_calls_queued_behind_one_in_flight_go_in_one_round_trip(
    client: redis.Redis, gate: Gate, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    batch(["n"], ["load"], later())
    warm(client)
    leader, followers, release = queue_behind_one(batch, gate, pool)
    before = reads(real_redis)
    release.set()
    assert leader.result(5) == ("got first", 0)
    # each caller has its own reply, not another's
    assert [f.result(5) for f in followers] == [(f"got {i}", 0) for i in range(QUEUED)]
    assert reads(real_redis) - before == 3  # the held call, one pipeline of six, this INFO
    assert real_redis.get("n") == str(QUEUED + 2)


def test_one_calls_error_is_its_own(
    client: redis.Redis, gate: Gate, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    leader, followers, release = queue_behind_one(
        batch, gate, pool, then=lambda i: "fail" if i == 2 else str(i))
    release.set()
    assert leader.result(5) == ("got first", 0)
    for i, future in enumerate(followers):
        if i == 2:
            with pytest.raises(redis.exceptions.ResponseError, match="failed on purpose"):
                future.result(5)
        else:
            assert future.result(5) == (f"got {i}", 0)
    assert real_redis.get("n") == str(QUEUED)


@pytest.mark.parametrize("replicas", [0, 1])
def test_a_flushed_script_cache_is_reloaded_for_lone_and_batched_calls(
    client: redis.Redis, gate: Gate, real_redis: redis.Redis, pool: ThreadPoolExecutor,
    request: pytest.FixtureRequest, replicas: int
) -> None:
    if replicas:
        request.getfixturevalue("replica")
    batch = ScriptBatch(client, SCRIPT, replicas=replicas)
    real_redis.script_flush()
    assert batch(["n"], ["a"], later()) == ("got a", replicas)
    leader, followers, release = queue_behind_one(batch, gate, pool)
    real_redis.script_flush()  # after the held call's load: the pipeline finds none
    release.set()
    leader.result(5)
    # the calls run again once the script is loaded, their WAIT after them
    assert [f.result(5) for f in followers] == [(f"got {i}", replicas) for i in range(QUEUED)]
    assert real_redis.get("n") == str(QUEUED + 2)  # each ran once


def test_calls_behind_a_timed_out_one_fail_at_once_unsent(
    client: redis.Redis, gate: Gate, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    gate.fail_with = redis.exceptions.TimeoutError("Timeout reading from socket")
    leader, followers, release = queue_behind_one(batch, gate, pool)
    release.set()
    with pytest.raises(redis.exceptions.TimeoutError):
        leader.result(5)
    for future in followers:
        with pytest.raises(NotSent):
            future.result(5)
    gate.fail_with = None
    assert real_redis.get("n") is None  # none of them ran
    assert batch(["n"], ["after"], later()) == ("got after", 0)  # nothing left in flight


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_any_failure_in_flight_wakes_the_queue_and_moves_it_on(
    client: redis.Redis, gate: Gate,
    real_redis: redis.Redis, pool: ThreadPoolExecutor, failure: BaseException
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    gate.fail_with = failure
    leader, followers, release = queue_behind_one(batch, gate, pool)
    release.set()
    with pytest.raises(type(failure)):
        leader.result(5)
    # the queued calls were not held back by the failure: sent as the next batch
    assert [f.result(5) for f in followers] == [(f"got {i}", 0) for i in range(QUEUED)]
    gate.fail_with = None
    assert batch(["n"], ["after"], later()) == ("got after", 0)


def test_a_connection_error_reaches_every_caller_of_its_batch_as_its_own(
    client: redis.Redis, gate: Gate, real_redis: redis.Redis, pool: ThreadPoolExecutor
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    leader, followers, release = queue_behind_one(batch, gate, pool)
    gate.refusing = True  # the held call's round trip goes on; the batch behind it is refused
    release.set()
    assert leader.result(5) == ("got first", 0)
    errors = []
    for future in followers:
        with pytest.raises(redis.exceptions.ConnectionError, match="refused") as caught:
            future.result(5)
        errors.append(caught.value)
    gate.refusing = False
    assert len({id(e) for e in errors}) == QUEUED  # an instance each: tracebacks apart
    assert real_redis.get("n") == "1"  # the client's one retry was refused too
    assert batch(["n"], ["after"], later()) == ("got after", 0)  # on a new connection


def test_a_dropped_connection_is_retried_once_as_the_client_would(
    client: redis.Redis, real_redis: redis.Redis
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    assert batch(["n"], ["a"], later()) == ("got a", 0)
    real_redis.client_kill_filter(_type="normal", skipme=True)  # e.g. Redis restarted
    assert batch(["n"], ["b"], later()) == ("got b", 0)
    assert real_redis.get("n") == "2"


def test_many_threads_each_get_their_own_reply(
    client: redis.Redis, real_redis: redis.Redis
) -> None:
    batch = ScriptBatch(client, SCRIPT)
    with ThreadPoolExecutor(16) as executor:
        replies = list(executor.map(lambda n: batch(["n"], [str(n)], later()), range(2000)))
    assert replies == [(f"got {n}", 0) for n in range(2000)]
    assert real_redis.get("n") == "2000"


def test_with_replicas_each_round_trip_ends_with_one_wait(
    client: redis.Redis, gate: Gate,
    real_redis: redis.Redis, pool: ThreadPoolExecutor, replica: RedisServer
) -> None:
    batch = ScriptBatch(client, SCRIPT, replicas=1)
    assert batch(["n"], ["a"], later()) == ("got a", 1)  # a lone call: script and WAIT in one
    warm(client)
    before = waits(real_redis)
    leader, followers, release = queue_behind_one(batch, gate, pool)
    release.set()
    assert leader.result(5) == ("got first", 1)
    assert [f.result(5) for f in followers] == [(f"got {i}", 1) for i in range(QUEUED)]
    # queue_behind_one's warm-up call, the held call, and one WAIT for the six behind it
    assert waits(real_redis) - before == 3
    assert real_redis.get("n") == str(QUEUED + 2)


def test_a_wait_short_of_its_replicas_answers_how_many_have_the_writes(
    client: redis.Redis, real_redis: redis.Redis, replica: RedisServer
) -> None:
    batch = ScriptBatch(client, SCRIPT, replicas=2, wait_margin=0.05)
    # one replica of the two asked for; the WAIT gives up at the deadline less the margin
    assert batch(["n"], ["a"], time.monotonic() + 0.15) == ("got a", 1)
    assert real_redis.get("n") == "1"  # the script ran: the caller decides what 1 of 2 means


def test_a_wait_lasts_until_the_batchs_earliest_deadline_less_the_margin(
    client: redis.Redis
) -> None:
    batch = ScriptBatch(client, SCRIPT, replicas=1, wait_margin=0.5)
    now = time.monotonic()
    calls = [_Call((), now + 20), _Call((), now + 10), _Call((), now + 30)]
    assert 9_000 < batch._wait_ms(calls) <= 9_500  # noqa: SLF001
    # never WAIT 0, which blocks for ever
    assert batch._wait_ms([_Call((), now - 1)]) == 1  # noqa: SLF001
