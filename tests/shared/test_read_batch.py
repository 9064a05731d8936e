"""Reads of several stores in one round trip (shared/read_batch.py), on fakeredis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from shared.blocked_numbers import BlockedNumbers
from shared.opt_outs import OptOuts, ParticipantState
from shared.pool_inventory import PoolInventory
from shared.read_batch import ReadBatch
from tests.shared.conftest import A, B, World, inbound

POOL_NUMBER, STRANGER = "447700900100", "447400999999"


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The commands of each round trip made to Redis, in order (a pipeline's together)."""
    trips: list[list[str]] = []
    command: Callable[..., Any] = redis.Redis.execute_command
    execute: Callable[..., Any] = redis.client.Pipeline.execute

    def one_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        trips.append([str(args[0]).upper()])
        return command(self, *args, **options)

    def pipelined(self: redis.client.Pipeline, *args: Any, **options: Any) -> Any:
        if self.command_stack:
            trips.append([str(args[0]).upper() for args, _ in self.command_stack])
        return execute(self, *args, **options)

    # a pipeline queues through its own execute_command, so each trip is counted once
    monkeypatch.setattr(redis.Redis, "execute_command", one_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", pipelined)
    yield trips


def test_a_batch_answers_each_read_as_the_stores_alone_do(client, round_trips):
    opt_outs, inventory, blocked = OptOuts(client), PoolInventory(client), BlockedNumbers(client)
    opt_outs.change(A, POOL_NUMBER, ParticipantState.OPTED_OUT, "m1")
    inventory.add(POOL_NUMBER, "GB")
    blocked.block(STRANGER, 1.0)
    pairs = [(A, POOL_NUMBER), (B, POOL_NUMBER)]
    alone = (opt_outs.get_many(pairs), inventory.owned(A, POOL_NUMBER),
             blocked.blocked(A, STRANGER))
    round_trips.clear()

    batch = ReadBatch(client)
    states = opt_outs.queue_get_many(batch, pairs)
    own = inventory.queue_owned(batch, A, POOL_NUMBER)
    found = blocked.queue_blocked(batch, A, STRANGER)
    batch.run()

    assert (states.value, own.value, found.value) == alone
    assert own.value == frozenset({POOL_NUMBER}) and found.value == {STRANGER}
    assert states.value[0] is not None and states.value[1] is None
    assert round_trips == [["HGETALL", "HGETALL", "SMISMEMBER", "ZMSCORE"]]


def test_a_batch_with_nothing_to_read_makes_no_round_trip(client, round_trips):
    batch = ReadBatch(client)
    states = OptOuts(client).queue_get_many(batch, [])
    own = PoolInventory(client).queue_owned(batch)
    found = BlockedNumbers(client).queue_blocked(batch)
    batch.run()

    assert (states.value, own.value, found.value) == ([], frozenset(), set())
    assert round_trips == []


def test_a_read_has_no_answer_before_its_batch_runs(client):
    batch = ReadBatch(client)
    own = PoolInventory(client).queue_owned(batch, A)
    with pytest.raises(RuntimeError):
        _ = own.value


def test_a_batch_refuses_commands_no_read_accounts_for(client):
    batch = ReadBatch(client)
    batch.pipeline.get("stray")
    with pytest.raises(RuntimeError):
        batch.run()


def test_an_inbound_message_reads_opt_outs_pool_and_blocks_in_one_round_trip(
    world: World, round_trips
):
    _, conversation = world.start()
    whole = world.services.reassembler.reassemble(
        inbound(A, conversation.participants[0].proxy_number, "m1", "hello"))
    round_trips.clear()

    context = world.services.inbound.context(whole)

    assert context.routed
    screened = [trip for trip in round_trips if "SMISMEMBER" in trip or "ZMSCORE" in trip]
    # both ends' opt-out states, their pool membership and blocks: one trip
    assert screened == [["HGETALL", "HGETALL", "SMISMEMBER", "ZMSCORE"]]
