"""How many virtual numbers does one country need for a marketplace day?

Simulates a seeded, deterministic day in one country (GB): many short conversations between
ordinary people (Poisson arrivals, durations of minutes) and a few heavy users (drivers on a
shift) who hold up to k conversations at once. The day is replayed in order through the real
create path (`ConversationStore.add`, `Conversations.establish` with an in-memory Vonage) and
the real close (`ConversationStore.finish`, which frees the routes) on a private redis-server:

* with a pool of exactly k numbers: no conversation may fail with `pool_exhausted`;
* with k - 1 numbers: some must (the bound is tight: a heavy user at k needs k numbers).

For the same day it computes what the other schemes need: one number per conversation (the peak
of simultaneous conversations, the baseline) and a shared number for both sides (Plivo's
documented scheme: 2k - 1 in the worst case; a first-fit replay of this day is shown too).
Goal: exactly k numbers for ours.

    .venv/bin/python -m bench.numbers_needed [--conversations 4000] [--k 4] [--seed 7]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis

from bench.common import bench_settings, print_table, private_redis, ratio
from shared.domain import Conversation, ConversationStatus, Participant
from shared.wiring import Services

DAY_SECONDS = 24 * 3600
COUNTRY = "GB"


@dataclass(frozen=True, slots=True)
class Chat:
    """One conversation of the day: who, from when to when (simulated seconds)."""

    id: str
    first: str
    second: str
    start: float
    end: float


def ordinary(i: int) -> str:
    return f"44740{i:07d}"  # GB mobile ranges: Number Insight (the fake) says GB


def heavy(i: int) -> str:
    return f"44743{i:07d}"


def simulate_day(
    conversations: int = 4000,
    k: int = 4,
    heavy_users: int = 10,
    population: int = 20_000,
    mean_minutes: float = 20.0,
    shift_hours: float = 8.0,
    heavy_to_heavy: float = 0.3,
    seed: int = 7,
) -> list[Chat]:
    """A day of conversations in which nobody ever has more than k live at once.

    About a quarter of the conversations are heavy users' (each on a shift, a new job every
    few minutes, each job a conversation with a random ordinary person); the rest join two
    ordinary people, arriving as a Poisson process over the whole day. A share of heavy jobs
    (`heavy_to_heavy`) is with another heavy user (a power seller and a reseller): that is where
    a number shared by both sides runs short, since it must be free for both. A request that would
    give someone a (k+1)-th live conversation is not made (the marketplace would not dispatch
    it), so the day's largest per-person load is at most k; `measure` checks it reaches k.
    """
    rng = random.Random(seed)
    heavy_share = conversations // 4
    arrivals: list[tuple[float, int]] = []  # (time, heavy user index or -1)
    t = 0.0
    rate = (conversations - heavy_share) / DAY_SECONDS
    while len(arrivals) < conversations - heavy_share:
        t += rng.expovariate(rate)
        arrivals.append((t % DAY_SECONDS, -1))
    # Heavy users: shifts start at random times; jobs arrive faster than they end, so that
    # each heavy user keeps bumping into k live conversations.
    per_user = max(1, heavy_share // max(1, heavy_users))
    for user in range(heavy_users):
        start = rng.uniform(0, DAY_SECONDS - shift_hours * 3600)
        gap = shift_hours * 3600 / per_user
        for _ in range(per_user):
            arrivals.append((start, user))
            start += rng.expovariate(1 / gap)
    arrivals.sort()

    live: dict[str, int] = defaultdict(int)
    ending: list[tuple[float, str, str]] = []
    chats: list[Chat] = []
    for at, user in arrivals:
        while ending and ending[0][0] <= at:
            _, a, b = heapq.heappop(ending)
            live[a] -= 1
            live[b] -= 1
        if user >= 0:
            first = heavy(user)
            # heavy jobs last longer than the gap between them: the overlap that needs k
            duration = rng.uniform(2.0, 4.0) * mean_minutes * 60
        else:
            first = ordinary(rng.randrange(population))
            duration = min(60 * 60, max(60.0, rng.expovariate(1 / (mean_minutes * 60))))
        second = ordinary(rng.randrange(population))
        if user >= 0 and heavy_users > 1 and rng.random() < heavy_to_heavy:
            second = heavy((user + rng.randrange(1, heavy_users)) % heavy_users)
        if first == second or live[first] >= k or live[second] >= k:
            continue
        live[first] += 1
        live[second] += 1
        chats.append(Chat(f"{len(chats):032x}", first, second, at, at + duration))
        heapq.heappush(ending, (at + duration, first, second))
    return chats


def _events(chats: list[Chat]) -> list[tuple[float, int, Chat]]:
    """Starts and ends in time order; at equal times an end comes first (its routes are free)."""
    events = [(c.start, 1, c) for c in chats] + [(c.end, 0, c) for c in chats]
    events.sort(key=lambda e: (e[0], e[1], e[2].id))
    return events


def peak_simultaneous(chats: list[Chat]) -> int:
    """One number per conversation needs as many numbers as conversations are live at once."""
    live = peak = 0
    for _, kind, _ in _events(chats):
        live += 1 if kind else -1
        peak = max(peak, live)
    return peak


def largest_personal_load(chats: list[Chat]) -> int:
    """The most live conversations one person has at once: the k of the day."""
    live: dict[str, int] = defaultdict(int)
    peak = 0
    for _, kind, chat in _events(chats):
        for person in (chat.first, chat.second):
            live[person] += 1 if kind else -1
            peak = max(peak, live[person])
    return peak


def shared_number_first_fit(chats: list[Chat]) -> int:
    """Numbers a shared-number scheme used on this day: both sides text the same number, so it
    must be free for both; the lowest such number is taken (first fit)."""
    held: dict[str, set[int]] = defaultdict(set)
    given: dict[str, int] = {}
    used = 0
    for _, kind, chat in _events(chats):
        if kind:
            taken = held[chat.first] | held[chat.second]
            number = next(n for n in range(len(taken) + 1) if n not in taken)
            given[chat.id] = number
            held[chat.first].add(number)
            held[chat.second].add(number)
            used = max(used, number + 1)
        else:
            number = given.pop(chat.id)
            held[chat.first].discard(number)
            held[chat.second].discard(number)
    return used


@dataclass(frozen=True, slots=True)
class Replay:
    pool: int
    created: int
    exhausted: int
    numbers_used: int
    seconds: float


def replay(client: redis.Redis, chats: list[Chat], pool: int) -> Replay:
    """The day through the real create and close paths with a pool of `pool` numbers."""
    from tests.doubles import FakeVonage  # the in-memory VonagePort (no network)

    client.flushall()
    services = Services.from_settings(bench_settings(), client)
    store, conversations = services.conversation_store, services.conversations
    for i in range(pool):
        services.inventory.add(f"447700900{i:03d}", COUNTRY)
    vonage = FakeVonage()
    exhausted = 0
    used: set[str] = set()
    started = time.monotonic()
    for _, kind, chat in _events(chats):
        if not kind:
            store.finish(chat.id, ConversationStatus.CLOSED)  # a no-op for a failed one
            continue
        store.add(Conversation(
            id=chat.id,
            participants=(Participant(chat.first), Participant(chat.second)),
            status=ConversationStatus.PENDING,
            created_at=time.time(),
            ttl_seconds=DAY_SECONDS,  # nothing expires on its own: the day ends them
        ))
        outcome = conversations.establish(chat.id, vonage).conversation
        if outcome is None:
            raise RuntimeError(f"conversation {chat.id} vanished")
        if outcome.status is ConversationStatus.ACTIVE:
            used.update(p.proxy_number or "" for p in outcome.participants)
        elif outcome.failure_reason == "pool_exhausted":
            exhausted += 1
        else:
            raise RuntimeError(f"conversation {chat.id}: {outcome.failure_reason}")
    return Replay(pool, len(chats), exhausted, len(used), time.monotonic() - started)


def measure(
    conversations: int = 4000,
    k: int = 4,
    heavy_users: int = 10,
    population: int = 20_000,
    seed: int = 7,
) -> dict[str, Any]:
    """Simulate the day, replay it with k and k - 1 numbers, and compare the schemes."""
    if k < 2:
        raise ValueError("k must be at least 2 (k - 1 numbers must be a pool)")
    chats = simulate_day(conversations, k, heavy_users, population, seed=seed)
    day_k = largest_personal_load(chats)
    if day_k != k:
        raise RuntimeError(f"the simulated day peaks at {day_k} per person, not k={k}: "
                           "raise --conversations or --heavy-users")
    with private_redis() as (_, client):
        with_k = replay(client, chats, k)
        with_fewer = replay(client, chats, k - 1)
    peak = peak_simultaneous(chats)
    shared_bound = 2 * k - 1
    return {
        "conversations": len(chats),
        "k": k,
        "seed": seed,
        "peak_simultaneous": peak,
        "one_per_conversation": peak,
        "shared_number_bound": shared_bound,
        "shared_number_first_fit": shared_number_first_fit(chats),
        "ours": k,
        "ours_exhausted": with_k.exhausted,
        "ours_numbers_used": with_k.numbers_used,
        "fewer_exhausted": with_fewer.exhausted,
        "replay_seconds": with_k.seconds + with_fewer.seconds,
        "ratio_ours_to_baseline": ratio(k, peak),
        "meets_goal": with_k.exhausted == 0 and with_fewer.exhausted > 0,
    }


def report(figures: dict[str, Any]) -> None:
    k, n, peak = figures["k"], figures["conversations"], figures["peak_simultaneous"]
    print(
        f"A day of {n} conversations in one country (seed {figures['seed']}), largest "
        f"per-person load k = {k}, peak {peak} live at once; replayed twice through "
        f"the real create and close paths in {figures['replay_seconds']:.1f} s"
    )
    print_table(
        "Numbers needed for the day",
        ["scheme", "numbers", "ratio to baseline", "pool_exhausted", "goal"],
        [
            ["one number per conversation (baseline: peak live)", peak, "1.00", "-", "-"],
            [f"shared number for both sides (Plivo): 2k-1 (first fit on this day: "
             f"{figures['shared_number_first_fit']})", figures["shared_number_bound"],
             f"{ratio(figures['shared_number_bound'], peak):.3f}", "-", "-"],
            [f"ours, pool of k = {k} (numbers used: {figures['ours_numbers_used']})", k,
             f"{figures['ratio_ours_to_baseline']:.3f}", f"{figures['ours_exhausted']} of {n}",
             "0 failures with exactly k"],
            [f"ours, pool of k-1 = {k - 1}", k - 1, f"{ratio(k - 1, peak):.3f}",
             f"{figures['fewer_exhausted']} of {n}", "> 0 (k is tight)"],
        ],
    )
    verdict = "meets" if figures["meets_goal"] else "DOES NOT meet"
    print(f"Result: exactly k = {k} numbers serve the day with no pool_exhausted, k-1 fail "
          f"{figures['fewer_exhausted']} times: {verdict} the goal.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=4000,
                        help="conversation requests in the day (a few are not made: k cap)")
    parser.add_argument("--k", type=int, default=4, help="most live conversations per person")
    parser.add_argument("--heavy-users", type=int, default=10)
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    figures = measure(args.conversations, args.k, args.heavy_users, args.population, args.seed)
    report(figures)
    return 0 if figures["meets_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
