"""How many bytes of Redis does one live conversation cost?

Creates N conversations through the real code path (`ConversationStore.add` for a named /v1
client, as the API does, then `Conversations.establish` with an in-memory Vonage: Number
Insight, the allocation script, activation, the two intro SMS records) in a private
redis-server, and sends and delivers each one's intros right after it is made, as the send and
receipt tasks record them (the real `MessageLog.mark_submitted` and `apply_receipt`, which
folds a delivered intro into its conversation's hash): the state a conversation keeps for the
rest of its life. (`--intros after` makes every conversation first and measures that state, all
intros owed, before sending them.) It measures `INFO memory` used_memory before and after, and
attributes the bytes by key type with `MEMORY USAGE key SAMPLES 0` on every key.

Load: a marketplace in one country (GB), a pool of 50 numbers; every conversation joins a
distinct rider with a driver who has `--per-driver` conversations, both with a short display
name, no metadata, no callback URL, the default intro template. The baseline is used_memory
with the pool set up and no conversation; the goal is at most 1 KB per live conversation.

    .venv/bin/python -m bench.memory [--conversations 100000] [--processes 3] [--intros each]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis

from bench.common import (
    bench_settings,
    mib,
    peak_rss_bytes,
    print_table,
    private_redis,
    server_pid,
    used_memory,
)
from shared import folded_intros
from shared.clock import now
from shared.domain import Conversation, ConversationStatus, Participant, new_conversation_id
from shared.keys import Keys
from shared.messages import MessageLog
from shared.outbound import intro_id
from shared.pool_inventory import PoolInventory
from shared.wiring import Services

GOAL_BYTES = 1024
POOL_COUNTRY = "GB"
CLIENT = "bench"  # the /v1 client every conversation belongs to (SMSPROXY_API_TOKENS names it)
KEYS = Keys()

# Key types in the order the tables show them. Each conversation pays for its own record and
# intros, a share of each person's keys, and one member in each shared index.
KEY_TYPES = (
    "conversation record",
    "routes hashes (per person)",
    "pair (sticky) hashes",
    "person listing indexes",
    "client listing index",
    "client live count (or set)",
    "expiry index",
    "pending index",
    "intro outbound records",
    "bodies awaiting their send",
    "open sends index",
    "Number Insight cache (per person)",
    "message log lists",
)
OTHER = "pool, numbers, counters"


def rider(i: int) -> str:
    return f"44740{i:07d}"  # a GB mobile range (checked with phonenumbers): Insight says GB


def driver(i: int, per_driver: int) -> str:
    return f"44741{i // per_driver:07d}"


def pool_number(i: int) -> str:
    return f"447700900{i:03d}"


def new_conversation(i: int, per_driver: int, created_at: float) -> Conversation:
    return Conversation(
        id=new_conversation_id(),  # the product's own ids (their length counts)
        participants=(
            Participant(rider(i), display_name="Rita"),
            Participant(driver(i, per_driver), display_name="Dev"),
        ),
        status=ConversationStatus.PENDING,
        created_at=created_at,
        ttl_seconds=86400,
        client=CLIENT,
    )


def _establish_range(job: tuple[str, int, int, int, bool]) -> tuple[int, list[str]]:
    """One process's share: add and establish conversations start..stop, and with `each`
    send and deliver each one's intros right after (as the send task, queued by the create,
    does); returns (failures, the ids of the conversations it made).

    Runs in a spawned process, so it imports the test double and builds its own client here.
    """
    from tests.doubles import FakeVonage

    url, start, stop, per_driver, each = job
    client = redis.Redis.from_url(url, decode_responses=True)
    services = Services.from_settings(bench_settings(), client)
    log = MessageLog(client)
    store, conversations = services.conversation_store, services.conversations
    vonage = FakeVonage()
    failures, ids = 0, []
    for i in range(start, stop):
        conversation = new_conversation(i, per_driver, now())  # as the API stamps it
        store.add(conversation)
        ids.append(conversation.id)
        outcome = conversations.establish(conversation.id, vonage)
        if outcome.conversation is None or outcome.conversation.status is not (
            ConversationStatus.ACTIVE
        ):
            failures += 1
        elif each:
            _deliver(log, conversation.id, 2 * i)
    client.close()
    return failures, ids


def _deliver(log: MessageLog, conv: str, serial: int) -> None:
    """A conversation's two intros go out and are delivered, as the send task and the receipt
    task record them."""
    for index in range(2):
        outbound = intro_id(conv, index)
        vonage_id = f"{index:02x}{serial + index:016x}"  # Vonage's are 16-18 hex characters
        log.mark_submitted(outbound, [vonage_id], retain_body=False)
        log.apply_receipt(outbound, vonage_id, "delivered", "0")


def _send_range(job: tuple[str, list[str]]) -> int:
    """The intros of these conversations go out and are delivered, as the send task and the
    receipt task record it; returns how many sends were recorded."""
    url, ids = job
    client = redis.Redis.from_url(url, decode_responses=True)
    log = MessageLog(client)
    for n, conv in enumerate(ids):
        _deliver(log, conv, 2 * n)
    client.close()
    return 2 * len(ids)


def _chunks(count: int, processes: int, per_driver: int) -> list[tuple[int, int]]:
    # whole drivers, so that no two processes race on one driver's routes (the allocation
    # script would cope, but then the load would depend on scheduling)
    chunk = max(per_driver, (count // max(1, processes * 8)) // per_driver * per_driver)
    return [(s, min(count, s + chunk)) for s in range(0, count, chunk)]


def _run(processes: int, function: Any, jobs: Sequence[Any]) -> list[Any]:
    if processes <= 1:
        return [function(job) for job in jobs]
    # spawn, not fork: a forked child would share the parent's Redis connections
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return list(pool.map(function, jobs))


def populate(
    url: str, count: int, processes: int, per_driver: int, each: bool = False
) -> tuple[int, list[str]]:
    """Create `count` conversations through the real path (with `each`, their intros sent and
    delivered right after each); (failures, their ids)."""
    jobs = [(url, s, e, per_driver, each) for s, e in _chunks(count, processes, per_driver)]
    failures, ids = 0, []
    for failed, made in _run(processes, _establish_range, jobs):
        failures += failed
        ids += made
    return failures, ids


def send_all(url: str, ids: Sequence[str], processes: int) -> int:
    step = max(1, len(ids) // max(1, processes * 8))
    jobs = [(url, list(ids[s:s + step])) for s in range(0, len(ids), step)]
    return sum(_run(processes, _send_range, jobs))


def category(key: str) -> str:
    name = key.removeprefix(KEYS.prefix)
    kind, _, rest = name.partition(":")
    if kind == "conv":
        return "message log lists" if rest.endswith(":log") else "conversation record"
    if kind == "out":
        if rest == "open":
            return "open sends index"
        return "bodies awaiting their send" if rest.endswith(":text") else (
            "intro outbound records"
        )
    if kind == "client":
        live = rest.endswith((":live", ":live-count"))
        return "client live count (or set)" if live else "client listing index"
    if kind == "pending" and rest == "convs":
        return "pending index"
    if kind == "ni" and not rest.startswith("tries:"):
        return "Number Insight cache (per person)"
    return {
        "routes": "routes hashes (per person)",
        "pair": "pair (sticky) hashes",
        "person": "person listing indexes",
        "expiry": "expiry index",
    }.get(kind, OTHER)


def usage_by_category(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """Sum of `MEMORY USAGE key SAMPLES 0` (exact: every element counted, with the key's name
    and its entry in the key table) and key counts, per key type, over every key."""
    sizes: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)  # type: ignore[no-untyped-call]
        for key, size in zip(batch, pipe.execute(), strict=True):
            sizes[category(key)] += int(size or 0)
            counts[category(key)] += 1
        batch.clear()

    for key in client.scan_iter(count=5000):
        batch.append(str(key))
        if len(batch) >= 5000:
            flush()
    flush()
    return dict(sizes), dict(counts)


def _table_overhead(client: redis.Redis) -> tuple[int, int]:
    """(key table + expiry table bytes, keys) from MEMORY STATS for database 0."""
    stats = client.execute_command("MEMORY STATS")  # type: ignore[no-untyped-call]
    db = stats.get("db.0", {})
    tables = int(db.get("overhead.hashtable.main", 0)) + int(
        db.get("overhead.hashtable.expires", 0)
    )
    return tables, int(stats.get("keys.count", 0))


# MEMORY USAGE already counts each key's dict entry; MEMORY STATS counts it again in the key
# table's overhead (sizeof(dictEntry) on 64-bit Redis 7).
DICT_ENTRY_BYTES = 24


def _snapshot(client: redis.Redis) -> dict[str, Any]:
    sizes, counts = usage_by_category(client)
    tables, keys = _table_overhead(client)
    return {"used": used_memory(client), "sizes": sizes, "counts": counts,
            "tables": tables, "keys": keys}


def _per_conversation(
    snap: dict[str, Any], empty: dict[str, Any], n: int
) -> dict[str, Any]:
    per = {name: snap["sizes"].get(name, 0) / n for name in KEY_TYPES}
    total = (snap["used"] - empty["used"]) / n
    tables = (
        (snap["tables"] - empty["tables"]) - (snap["keys"] - empty["keys"]) * DICT_ENTRY_BYTES
    ) / n
    return {
        "total": total,
        "by_type": per,
        "key_counts": {name: snap["counts"].get(name, 0) for name in KEY_TYPES},
        "keys_per_conversation": (snap["keys"] - empty["keys"]) / n,
        "key_tables": tables,
        "remainder": total - sum(per.values()) - tables,
    }


def folded_share(client: redis.Redis, sample: Sequence[str]) -> dict[str, Any]:
    """Of a sample of conversations: how many intros were folded into the conversation's hash
    (shared/folded_intros.py) rather than kept as keys, and the mean folded value's length."""
    pipe = client.pipeline(transaction=False)
    for conv in sample:
        pipe.hmget(KEYS.conversation(conv), *folded_intros.FIELDS)
    values = [v for pair in pipe.execute() for v in pair if v is not None]
    return {"intros": 2 * len(sample), "folded": len(values),
            "mean_value_bytes": sum(len(v) for v in values) / max(1, len(values))}


def measure(
    conversations: int = 100_000,
    processes: int = 3,
    pool_size: int = 50,
    per_driver: int = 3,
    intros: str = "each",
) -> dict[str, Any]:
    """Run the benchmark and return its figures (bytes are per live conversation).

    `intros`: "each" sends and delivers a conversation's intros right after it is made, as the
    product does (a few are owed at any time); "after" makes every conversation first, all
    their intros owed at once, and measures that state too before sending them all (Redis's
    key and expiry tables then keep the size that peak of keys gave them)."""
    with private_redis() as (server, client):
        inventory = PoolInventory(client)
        for i in range(pool_size):
            inventory.add(pool_number(i), POOL_COUNTRY)
        empty = _snapshot(client)

        started = time.monotonic()
        each = intros == "each"
        failures, ids = populate(server.url, conversations, processes, per_driver, each)
        elapsed = time.monotonic() - started
        if failures:
            raise RuntimeError(f"{failures} conversations did not become active")
        established = None if each else _snapshot(client)
        sent = 2 * conversations if each else send_all(server.url, ids, processes)
        if sent != 2 * conversations:
            raise RuntimeError(f"{sent} intros recorded as sent, not {2 * conversations}")
        delivered = _snapshot(client)
        peak = peak_rss_bytes(server_pid(client))
        step = max(1, len(ids) // 1000)
        folded = folded_share(client, ids[::step][:1000])
        encodings = {
            "conversation record": str(client.object("encoding", KEYS.conversation(ids[-1]))),
            "intro outbound records": str(
                client.object("encoding", KEYS.outbound(intro_id(ids[-1], 0)))
            ),
        }

    after_send = _per_conversation(delivered, empty, conversations)
    return {
        "conversations": conversations,
        "processes": processes,
        "seconds": elapsed,
        "rate_per_second": conversations / elapsed,
        "used_memory_before": empty["used"],
        "peak_rss_bytes": peak,
        "id_length": len(ids[-1]),
        "encodings": encodings,
        "intros": intros,
        "established": (
            _per_conversation(established, empty, conversations) if established else None
        ),
        "delivered": after_send,
        "bytes_per_conversation": after_send["total"],
        "folded_intros": folded,
        "goal_bytes": GOAL_BYTES,
        "ratio_to_goal": after_send["total"] / GOAL_BYTES,
        "meets_goal": after_send["total"] <= GOAL_BYTES,
    }


def report(figures: dict[str, Any]) -> None:
    n = figures["conversations"]
    goal = figures["goal_bytes"]
    done = figures["delivered"]
    est = figures["established"] or done  # "each": no state with every intro owed
    print(
        f"{n} conversations established through the real path in {figures['seconds']:.1f} s "
        f"({figures['rate_per_second']:.0f}/s, {figures['processes']} processes); "
        f"ids of {figures['id_length']} characters; redis-server peak RSS "
        f"{mib(figures['peak_rss_bytes'])}; encodings: "
        + ", ".join(f"{k} {v}" for k, v in figures["encodings"].items())
    )
    both = figures["established"] is not None
    rows: list[list[object]] = []

    def row(name: str, *cells: object) -> None:
        rows.append([name, *(cells if both else cells[2:])])

    for name in KEY_TYPES:
        if est["key_counts"][name] or done["key_counts"][name]:
            row(name, est["key_counts"][name], f"{est['by_type'][name]:.0f}",
                done["key_counts"][name], f"{done['by_type'][name]:.0f}")
    row("key and expiry tables (MEMORY STATS)", "-", f"{est['key_tables']:.0f}",
        "-", f"{done['key_tables']:.0f}")
    row("remainder (allocator, fragments of shared structures)", "-",
        f"{est['remainder']:.0f}", "-", f"{done['remainder']:.0f}")
    row("**total (INFO used_memory delta)**",
        f"{est['keys_per_conversation']:.2f} keys/conv", f"**{est['total']:.0f}**",
        f"{done['keys_per_conversation']:.2f} keys/conv", f"**{done['total']:.0f}**")
    headers = ["keys (established)", "bytes/conv (established)"] if both else []
    print_table(
        f"Bytes per live conversation by key type ({n} conversations; baseline: the pool "
        f"and no conversation, {mib(figures['used_memory_before'])})",
        ["key type", *headers, "keys (intros delivered)", "bytes/conv (intros delivered)"],
        rows,
    )
    total = figures["bytes_per_conversation"]
    states = [] if figures["established"] is None else [
        ["just established (every intro owed)", f"{est['total']:.0f}",
         f"{est['total'] / goal:.2f}", f"<= {goal}"]]
    print_table(
        f"Bytes per live conversation versus the goal (intros sent: {figures['intros']})",
        ["state", "bytes / conversation", "ratio to goal", "goal"],
        [*states, ["intros sent and delivered (what it keeps)", f"{total:.0f}",
                   f"{figures['ratio_to_goal']:.2f}", f"<= {goal}"]],
    )
    fold = figures["folded_intros"]
    print(f"Intros folded into their conversation's hash (a sample): {fold['folded']} of "
          f"{fold['intros']}, values of {fold['mean_value_bytes']:.0f} bytes on average")
    verdict = "meets" if figures["meets_goal"] else "DOES NOT meet"
    print(f"Result: {total:.0f} bytes per live conversation (ratio {figures['ratio_to_goal']:.2f}"
          f" to the goal) {verdict} the goal of <= {goal}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=50)
    parser.add_argument("--per-driver", type=int, default=3)
    parser.add_argument(
        "--intros", choices=("each", "after"), default="each",
        help="each: a conversation's intros are sent and delivered right after it is made (as "
             "in the product); after: once every conversation is made (measures that state "
             "too, and the key tables keep the size of its peak of keys)")
    args = parser.parse_args(argv)
    figures = measure(
        conversations=args.conversations,
        processes=args.processes,
        pool_size=args.pool_size,
        per_driver=args.per_driver,
        intros=args.intros,
    )
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
