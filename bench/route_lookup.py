"""Does a route lookup cost the same with 1,000 and with 1,000,000 live conversations?

Every inbound SMS is routed by one HGET on `routes:<sender's real number>` (field: the virtual
number texted). This benchmark fills two private redis-servers with the key layout the product
writes — one with the baseline size, one with the large size — and times random lookups (half
hits, half misses) through the real `RouteTable.find`, a bare redis-py HGET, a
pipelined HGET (the network round trip amortised away, so the server's share shows), and the
server's own time per HGET (`INFO commandstats`). Within a round the two servers alternate
block by block, so that the machine's noise lands on both; the figure is the median over
rounds, and the goal is large/baseline <= 1.2 (constant time) for `find_route`. Both servers are
pinned to one CPU and this process to the others (unless `--no-pin`), so that both sizes get
the same placement.

Layout, as the allocation script writes it: a marketplace where every conversation joins a
distinct rider with a driver who has `--per-driver` live conversations on distinct numbers of a
small pool; `routes:<real>` hashes map virtual number -> conversation id, and (unless
`--routes-only`) each conversation's JSON is stored too, so that the key table is as large as in
production.

    .venv/bin/python -m bench.route_lookup [--small 1000] [--large 1000000] [--lookups 20000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from bench.common import (
    median,
    mib,
    print_table,
    private_redis,
    ratio,
    server_pid,
    used_memory,
)
from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.routes import RouteTable

GOAL_RATIO = 1.2
KEYS = Keys()
POOL = tuple(f"447700900{i:03d}" for i in range(8))


def rider(i: int) -> str:
    return f"44740{i:07d}"


def driver(i: int, per_driver: int) -> str:
    return f"44741{i // per_driver:07d}"


def conversation_id(i: int) -> str:
    return f"{i:032x}"  # as long as the product's uuid4().hex


def proxies(i: int, per_driver: int) -> tuple[str, str]:
    """(rider's proxy, driver's proxy) for conversation i: the driver's conversations sit on
    distinct numbers, as the allocator guarantees; the rider's is any pool number."""
    return POOL[(i * 7) % len(POOL)], POOL[i % per_driver]


def _conversation_json(i: int, per_driver: int, created_at: float) -> str:
    rider_proxy, driver_proxy = proxies(i, per_driver)
    return Conversation(
        id=conversation_id(i),
        participants=(
            Participant(rider(i), rider_proxy, "GB", "Rita"),
            Participant(driver(i, per_driver), driver_proxy, "GB", "Dev"),
        ),
        status=ConversationStatus.ACTIVE,
        created_at=created_at,
        ttl_seconds=86400,
        expires_at=created_at + 86400,
    ).to_json()


def populate(
    client: redis.Redis, conversations: int, per_driver: int, *, with_json: bool,
    batch: int = 5000,
) -> float:
    """Write the routes (and conversation JSON) of `conversations` live conversations with
    pipelined writes; returns the seconds it took. The same keys and values as the product,
    only written in bulk instead of one allocation script per conversation."""
    if per_driver > len(POOL):
        raise ValueError(f"per_driver must be at most the pool size ({len(POOL)})")
    started = time.monotonic()
    created_at = time.time()
    pipe = client.pipeline(transaction=False)
    queued = 0
    for first in range(0, conversations, per_driver):
        last = min(conversations, first + per_driver)
        driver_routes: dict[Any, Any] = {}
        for i in range(first, last):
            rider_proxy, driver_proxy = proxies(i, per_driver)
            pipe.hset(KEYS.routes(rider(i)), rider_proxy, conversation_id(i))
            driver_routes[driver_proxy] = conversation_id(i)
            if with_json:
                pipe.set(KEYS.conversation(conversation_id(i)),
                         _conversation_json(i, per_driver, created_at))
            queued += 2 if with_json else 1
        pipe.hset(KEYS.routes(driver(first, per_driver)), mapping=driver_routes)
        queued += 1
        if queued >= batch:
            pipe.execute()
            queued = 0
    pipe.execute()
    return time.monotonic() - started


@dataclass(frozen=True, slots=True)
class Query:
    real: str
    virtual: str
    expected: str | None


def queries(conversations: int, per_driver: int, count: int, seed: int) -> list[Query]:
    """Half hits (a random conversation, a random side), half misses: a known person texting
    a number they have no route on, or a stranger texting a pool number."""
    rng = random.Random(seed)
    found: list[Query] = []
    for n in range(count):
        i = rng.randrange(conversations)
        rider_proxy, driver_proxy = proxies(i, per_driver)
        if n % 2 == 0:
            if rng.random() < 0.5:
                found.append(Query(rider(i), rider_proxy, conversation_id(i)))
            else:
                found.append(Query(driver(i, per_driver), driver_proxy, conversation_id(i)))
        elif rng.random() < 0.5:
            other = next(p for p in POOL if p != rider_proxy)
            found.append(Query(rider(i), other, None))
        else:
            found.append(Query(f"44742{i:07d}", rider_proxy, None))
    return found


@dataclass(frozen=True, slots=True)
class Setup:
    """One size: its server's client, the store on it, and its queries cut into blocks."""

    client: redis.Redis
    store: RouteTable
    hits: list[list[Query]]
    misses: list[list[Query]]
    mixed: list[list[Query]]


def _blocks(items: Sequence[Query], size: int) -> list[list[Query]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _find_routes(setup: Setup, block: Sequence[Query]) -> None:
    for q in block:
        setup.store.find(q.real, q.virtual)


def _hgets(setup: Setup, block: Sequence[Query]) -> None:
    for q in block:
        setup.client.hget(f"{KEYS.prefix}routes:{q.real}", q.virtual)


def _pipelined_hgets(setup: Setup, block: Sequence[Query]) -> None:
    pipe = setup.client.pipeline(transaction=False)
    for q in block:
        pipe.hget(f"{KEYS.prefix}routes:{q.real}", q.virtual)
    pipe.execute()


Way = Callable[[Setup, Sequence[Query]], None]
WAYS: tuple[tuple[str, Way, str], ...] = (
    ("find_route hits", _find_routes, "hits"),
    ("find_route misses", _find_routes, "misses"),
    ("redis-py HGET", _hgets, "mixed"),
    ("pipelined HGET", _pipelined_hgets, "mixed"),
)


def one_round(setups: dict[str, Setup], first: str) -> dict[str, dict[str, float]]:
    """µs per lookup for each size and way, over one pass of each size's queries.

    The sizes alternate block by block (a block is a few hundred lookups), so that a burst of
    load from another process on this shared machine lands on both sizes alike.
    """
    order = (first, *(name for name in setups if name != first))
    spent = {name: dict.fromkeys([w[0] for w in WAYS], 0.0) for name in setups}
    counts = {name: dict.fromkeys([w[0] for w in WAYS], 0) for name in setups}
    for setup in setups.values():
        setup.client.config_resetstat()
    for label, way, which in WAYS:
        blocks = len(getattr(setups[first], which))
        for b in range(blocks):
            for name in order if b % 2 == 0 else reversed(order):
                block = getattr(setups[name], which)[b]
                started = time.perf_counter()
                way(setups[name], block)
                spent[name][label] += time.perf_counter() - started
                counts[name][label] += len(block)
    figures: dict[str, dict[str, float]] = {}
    for name, setup in setups.items():
        per = {label: spent[name][label] / counts[name][label] * 1e6 for label in spent[name]}
        hits, misses = counts[name]["find_route hits"], counts[name]["find_route misses"]
        per["find_route"] = (
            per["find_route hits"] * hits + per["find_route misses"] * misses
        ) / (hits + misses)
        stats = setup.client.info("commandstats").get("cmdstat_hget", {})
        per["server time per HGET"] = float(stats.get("usec_per_call", 0.0))
        figures[name] = per
    return figures


def _pin(clients: dict[str, redis.Redis]) -> set[int]:
    """Both redis-servers on the last CPU, this process on the others: otherwise the scheduler
    may place one server beside the client and the other across, and the round trips then
    differ for a reason that has nothing to do with the data. Only our own processes; returns
    this process's CPUs before, for the caller to restore."""
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    if len(cpus) >= 2:
        for client in clients.values():
            os.sched_setaffinity(server_pid(client), {cpus[-1]})
        os.sched_setaffinity(0, set(cpus[:-1]))
    return before


def check(store: RouteTable, qs: Sequence[Query]) -> None:
    """Every hit finds its conversation and every miss finds nothing (the layout is right)."""
    for q in qs:
        got = store.find(q.real, q.virtual)
        if got != q.expected:
            raise AssertionError(f"find_route({q.real}, {q.virtual}) = {got}, not {q.expected}")


MEASURES = (
    "find_route", "find_route hits", "find_route misses",
    "redis-py HGET", "pipelined HGET", "server time per HGET",
)


def measure(
    small: int = 1_000,
    large: int = 1_000_000,
    lookups: int = 20_000,
    repeats: int = 5,
    per_driver: int = 4,
    routes_only: bool = False,
    seed: int = 1,
    block: int = 500,
    pin: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; medians in µs per lookup for each size, and large/small ratios.

    Each size has a fresh private redis-server of its own (append-only off) rather than one
    server flushed between sizes: both stay populated, so rounds can alternate between them
    without writing a million conversations again for every round.
    """
    sizes = {"small": small, "large": large}
    rounds: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
    with private_redis() as (_, small_client), private_redis() as (_, large_client):
        clients = {"small": small_client, "large": large_client}
        populate_seconds, memory = {}, {}
        setups: dict[str, Setup] = {}
        for name, client in clients.items():
            client.flushall()
            populate_seconds[name] = populate(
                client, sizes[name], per_driver, with_json=not routes_only
            )
            memory[name] = used_memory(client)
            store = RouteTable(client)
            qs = queries(sizes[name], per_driver, lookups, seed)
            check(store, qs)  # also warms the connection and the caches up
            setups[name] = Setup(
                client, store,
                hits=_blocks([q for q in qs if q.expected is not None], block),
                misses=_blocks([q for q in qs if q.expected is None], block),
                mixed=_blocks(qs, block),
            )
        cpus = _pin(clients) if pin else None
        try:
            for repeat in range(repeats):
                per_size = one_round(setups, "small" if repeat % 2 == 0 else "large")
                for name in rounds:
                    rounds[name].append(per_size[name])
        finally:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
    medians = {
        name: {m: median([r[m] for r in rounds[name]]) for m in MEASURES} for name in rounds
    }
    ratios = {m: ratio(medians["large"][m], medians["small"][m]) for m in MEASURES}
    return {
        "small": small,
        "large": large,
        "lookups": lookups,
        "repeats": repeats,
        "routes_only": routes_only,
        "populate_seconds": populate_seconds,
        "used_memory": memory,
        "median_us": medians,
        "ratio": ratios,
        "goal_ratio": GOAL_RATIO,
        "meets_goal": ratios["find_route"] <= GOAL_RATIO,
    }


def report(figures: dict[str, Any]) -> None:
    small, large = figures["small"], figures["large"]
    layout = "routes only" if figures["routes_only"] else "routes and conversation JSON"
    print(
        f"{figures['lookups']} lookups (half hits, half misses) per size per round, "
        f"{figures['repeats']} rounds alternating; {layout}; populated in "
        f"{figures['populate_seconds']['small']:.1f} s / {figures['populate_seconds']['large']:.1f}"
        f" s; used_memory {mib(figures['used_memory']['small'])} / "
        f"{mib(figures['used_memory']['large'])}"
    )
    rows = []
    for m in MEASURES:
        goal = f"<= {figures['goal_ratio']}" if m == "find_route" else "reference"
        rows.append([
            f"{m} (µs per lookup)",
            f"{figures['median_us']['small'][m]:.2f}",
            f"{figures['median_us']['large'][m]:.2f}",
            f"{figures['ratio'][m]:.2f}",
            goal,
        ])
    print_table(
        "Route lookup, median over rounds",
        ["measure", f"{small:,} conversations (baseline)", f"{large:,} conversations",
         "ratio", "goal"],
        rows,
    )
    verdict = "meets" if figures["meets_goal"] else "DOES NOT meet"
    print(f"Result: find_route ratio {figures['ratio']['find_route']:.2f} {verdict} the goal "
          f"(<= {figures['goal_ratio']}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=1_000, help="baseline conversations")
    parser.add_argument("--large", type=int, default=1_000_000, help="conversations to compare")
    parser.add_argument("--lookups", type=int, default=20_000, help="lookups per size per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (the median is kept)")
    parser.add_argument("--per-driver", type=int, default=4)
    parser.add_argument("--routes-only", action="store_true",
                        help="skip the conversation JSON keys (faster, smaller key table)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true",
                        help="leave CPU placement to the scheduler")
    args = parser.parse_args(argv)
    figures = measure(
        small=args.small, large=args.large, lookups=args.lookups, repeats=args.repeats,
        per_driver=args.per_driver, routes_only=args.routes_only, seed=args.seed,
        pin=not args.no_pin,
    )
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
