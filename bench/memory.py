"""How many bytes of Redis does one live conversation cost?

Creates N conversations through the real code path (`ConversationStore.add`, then
`Conversations.establish` with an in-memory Vonage: Number Insight, the allocation script,
activation, the two intro SMS records) in a private redis-server, measures `INFO memory`
used_memory before and after, and attributes it by key type with `MEMORY USAGE` on every key.
Then it sends and delivers the intros of a sample (the real `MessageLog.mark_submitted` and
`apply_receipt`) to show what the audit trail costs once the intros are out, and measures a few
layout proposals on synthetic copies of sampled keys (same key names, in database 1).

Load: a marketplace in one country (GB), a pool of 50 numbers; every conversation joins a
distinct rider with a driver who has `--per-driver` conversations, both with a short display
name, no metadata, no callback URL, the default intro template. The baseline is used_memory
with the pool set up and no conversation; the goal is at most 1 KB per live conversation.

    .venv/bin/python -m bench.memory [--conversations 100000] [--processes 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.messages import MessageLog
from shared.outbound import intro_id
from shared.pool_inventory import PoolInventory
from shared.wiring import Services

GOAL_BYTES = 1024
POOL_COUNTRY = "GB"
KEYS = Keys()

# Key types, in the order the table shows them; "core" is what a live conversation needs to
# route, "audit" is the trail of its two intro SMS.
CORE = (
    "conversation JSON",
    "routes hashes",
    "pair (sticky) hashes",
    "person index zsets",
    "listing index zset (convs)",
    "expiry index zset",
)
AUDIT = ("intro outbound records", "message log lists")
FIXED = "pool numbers and counters"


def rider(i: int) -> str:
    return f"44740{i:07d}"  # a GB mobile range (checked with phonenumbers): Insight says GB


def driver(i: int, per_driver: int) -> str:
    return f"44741{i // per_driver:07d}"


def conversation_id(i: int) -> str:
    return f"{i:032x}"  # as long as the product's uuid4().hex


def pool_number(i: int) -> str:
    return f"447700900{i:03d}"


def new_conversation(i: int, per_driver: int, created_at: float) -> Conversation:
    return Conversation(
        id=conversation_id(i),
        participants=(
            Participant(rider(i), display_name="Rita"),
            Participant(driver(i, per_driver), display_name="Dev"),
        ),
        status=ConversationStatus.PENDING,
        created_at=created_at,
        ttl_seconds=86400,
    )


def _establish_range(job: tuple[str, int, int, int]) -> int:
    """One process's share: add and establish conversations start..stop; returns failures.

    Runs in a spawned process, so it imports the test double and builds its own client here.
    """
    from tests.doubles import FakeVonage

    url, start, stop, per_driver = job
    client = redis.Redis.from_url(url, decode_responses=True)
    services = Services.from_settings(bench_settings(), client)
    store, conversations = services.conversation_store, services.conversations
    vonage = FakeVonage()
    failures = 0
    for i in range(start, stop):
        store.add(new_conversation(i, per_driver, time.time()))
        outcome = conversations.establish(conversation_id(i), vonage)
        if outcome.conversation is None or outcome.conversation.status is not (
            ConversationStatus.ACTIVE
        ):
            failures += 1
    client.close()
    return failures


def populate(url: str, count: int, processes: int, per_driver: int) -> int:
    """Create `count` conversations through the real path in `processes` processes.

    Chunks are whole drivers, so that no two processes race on one driver's routes (the
    allocation script would cope, but then the load would depend on scheduling).
    """
    chunk = max(per_driver, (count // max(1, processes * 8)) // per_driver * per_driver)
    jobs = [(url, s, min(count, s + chunk), per_driver) for s in range(0, count, chunk)]
    if processes <= 1:
        return sum(_establish_range(job) for job in jobs)
    # spawn, not fork: a forked child would share the parent's Redis connections
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_establish_range, jobs))


def category(key: str) -> str:
    name = key.removeprefix(KEYS.prefix)
    kind = name.split(":", 1)[0]
    if kind == "conv":
        return "message log lists" if name.endswith(":log") else "conversation JSON"
    if kind == "out" and name.endswith(":text"):
        return "SMS bodies awaiting their send"
    if name in {"out:open", "pending:jobs", "pending:due"}:
        return "outbox indexes (unfinished sends, unsettled jobs)"
    return {
        "routes": "routes hashes",
        "pair": "pair (sticky) hashes",
        "person": "person index zsets",
        "convs": "listing index zset (convs)",
        "expiry": "expiry index zset",
        "out": "intro outbound records",
    }.get(kind, FIXED)


def _memory_usage(pipe: Any, key: str) -> None:
    """Queue `MEMORY USAGE key SAMPLES 0`: exact (every element counted), with the key's name
    and its entry in the key table. redis-py's typed `memory_usage` wants the same; the raw
    command keeps it one call on a pipeline."""
    pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)


def usage_by_category(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """Sum of `MEMORY USAGE key SAMPLES 0` (exact, including the key and its dict entry) and
    key counts, per category, over every key."""
    sizes: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            _memory_usage(pipe, key)
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


def send_and_deliver(client: redis.Redis, ids: Iterable[str]) -> None:
    """The intros go out and are delivered, as the send task and the receipt task record it."""
    log = MessageLog(client)
    for conv in ids:
        for index in range(2):
            outbound = intro_id(conv, index)
            vonage_id = f"{conv[:16]}{index:02x}"  # Vonage's ids are 16-18 hex characters
            log.mark_submitted(outbound, [vonage_id], retain_body=False)
            log.apply_receipt(outbound, vonage_id, "delivered", "0")


# -- layout proposals, measured on synthetic copies of sampled keys ------------------------


def _compact(value: Any) -> Any:
    """JSON without nulls, empty objects and empty strings (absent means default)."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v not in (None, {}, "", [])}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _as_hash(raw: str) -> dict[Any, Any]:
    """A conversation as a flat hash (listpack-encoded while small), short field names."""
    data = _compact(json.loads(raw))
    flat: dict[Any, Any] = {}
    for side, participant in zip("ab", data.pop("participants"), strict=True):
        for name, value in participant.items():
            flat[f"{side}{name[0]}"] = str(value)  # an, ap, ac, ad: number, proxy, country, name
    for name, value in data.items():
        flat[name[:2]] = value if isinstance(value, str) else json.dumps(value)
    return flat


def _sizes(client: redis.Redis, keys: Sequence[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        _memory_usage(pipe, key)
    return sum(int(s or 0) for s in pipe.execute())


@dataclass(frozen=True, slots=True)
class Clients:
    """The product's database (0) and a scratch one (1) for synthetic keys with the same names,
    so that key lengths compare fairly; raw (undecoded) twins for DUMP/RESTORE payloads."""

    src: redis.Redis
    dst: redis.Redis
    raw_src: redis.Redis
    raw_dst: redis.Redis


def _conversation_numbers(client: redis.Redis, conv: str) -> tuple[str, str]:
    data = json.loads(str(client.get(KEYS.conversation(conv))))
    first, second = (p["number"] for p in data["participants"])
    return first, second


def _intro_keys(conv: str) -> list[str]:
    return [KEYS.outbound(intro_id(conv, i)) for i in range(2)]


# Each proposal measures one sampled conversation: (bytes of the keys it changes as the product
# wrote them, bytes of their synthetic replacement). Synthetic keys go to database 1 under the
# same names, so key lengths compare fairly.


def _json_compact(c: Clients, conv: str) -> tuple[int, int]:
    key = KEYS.conversation(conv)
    compact = _compact(json.loads(str(c.src.get(key))))
    c.dst.set(key, json.dumps(compact, separators=(",", ":")))
    return _sizes(c.src, [key]), _sizes(c.dst, [key])


def _json_as_hash(c: Clients, conv: str) -> tuple[int, int]:
    key = KEYS.conversation(conv)
    c.dst.hset(key, mapping=_as_hash(str(c.src.get(key))))
    return _sizes(c.src, [key]), _sizes(c.dst, [key])


def _fields(client: redis.Redis, key: str) -> dict[Any, Any]:
    return dict(client.hgetall(key))


def _intros_minimal(c: Clients, conv: str) -> tuple[int, int]:
    # conversation_id, kind, from and to are derivable from the id (intro-<conv>-<i>) and the
    # conversation; only the send's own state has to be stored.
    keys = _intro_keys(conv)
    for key in keys:
        c.dst.hset(key, mapping=_fields(c.src, key))
    listpack = _sizes(c.dst, keys)
    c.dst.delete(*keys)
    for key in keys:
        data: dict[Any, Any] = dict(c.src.hgetall(key))
        for derivable in ("conversation_id", "kind", "from", "to"):
            data.pop(derivable, None)
        c.dst.hset(key, mapping=data)
    return listpack, _sizes(c.dst, keys)


def _dropped(keys_of: Callable[[redis.Redis, str], list[str]]) -> Proposal:
    def measure_one(c: Clients, conv: str) -> tuple[int, int]:
        return _sizes(c.src, keys_of(c.src, conv)), 0

    return measure_one


def _pair_key(client: redis.Redis, conv: str) -> list[str]:
    return [KEYS.pair(*_conversation_numbers(client, conv))]


def _text_keys(_: redis.Redis, conv: str) -> list[str]:
    return [KEYS.outbound_text(intro_id(conv, i)) for i in range(2)]


def _short_prefix(c: Clients, conv: str) -> tuple[int, int]:
    # DUMP/RESTORE under the same name and under "sp:": both copies get the same encoding, so
    # the difference is the key names alone. Conversation and rider keys (the driver's are
    # shared by several conversations).
    first, second = _conversation_numbers(c.src, conv)
    keys = [
        KEYS.conversation(conv), KEYS.conversation_log(conv), KEYS.pair(first, second),
        KEYS.routes(first), KEYS.person_conversations(first), *_intro_keys(conv),
        *_text_keys(c.src, conv),
    ]
    same, short = [], []
    for key in keys:
        dumped = c.raw_src.dump(key)
        if dumped is not None:
            c.raw_dst.restore(key, 0, dumped, replace=True)
            c.raw_dst.restore("sp:" + key.removeprefix(KEYS.prefix), 0, dumped, replace=True)
            same.append(key)
            short.append("sp:" + key.removeprefix(KEYS.prefix))
    return _sizes(c.dst, same), _sizes(c.dst, short)


Proposal = Callable[[Clients, str], tuple[int, int]]

PROPOSALS: tuple[tuple[str, Proposal], ...] = (
    ("conversation JSON without nulls and empty fields", _json_compact),
    ("conversation as a small hash (listpack), short fields, no nulls", _json_as_hash),
    ("intro records without fields derivable from the id and the conversation",
     _intros_minimal),
    ("no pair key: sticky proxies from the pair's last conversation", _dropped(_pair_key)),
    ("key prefix 'sp:' instead of 'smsproxy:'", _short_prefix),
)


def measure_proposals(url: str, sample: Sequence[str]) -> list[tuple[str, float, float]]:
    """(proposal, bytes per conversation now, bytes saved per conversation), on `sample`."""
    scratch = url.rsplit("/", 1)[0] + "/1"
    c = Clients(
        src=redis.Redis.from_url(url, decode_responses=True),
        dst=redis.Redis.from_url(scratch, decode_responses=True),
        raw_src=redis.Redis.from_url(url),
        raw_dst=redis.Redis.from_url(scratch),
    )
    out = []
    try:
        for name, proposal in PROPOSALS:
            c.dst.flushdb()
            now_bytes = then_bytes = 0
            for conv in sample:
                now, then = proposal(c, conv)
                now_bytes, then_bytes = now_bytes + now, then_bytes + then
            n = max(1, len(sample))
            out.append((name, now_bytes / n, (now_bytes - then_bytes) / n))
        c.dst.flushdb()
    finally:
        for client in (c.src, c.dst, c.raw_src, c.raw_dst):
            client.close()
    return out


# -- the benchmark ---------------------------------------------------------------------------


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


def _sample_sizes(client: redis.Redis, ids: Sequence[str]) -> tuple[float, float]:
    """Mean bytes per conversation of its intro records and of their bodies awaiting send."""
    intros = [key for conv in ids for key in _intro_keys(conv)]
    texts = [key for conv in ids for key in _text_keys(client, conv)]
    n = max(1, len(ids))
    return _sizes(client, intros) / n, _sizes(client, texts) / n


def measure(
    conversations: int = 100_000,
    processes: int = 3,
    pool_size: int = 50,
    per_driver: int = 3,
    sent_sample: int = 10_000,
    proposal_sample: int = 1_000,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (bytes are per live conversation)."""
    sent_sample = min(sent_sample, conversations)
    proposal_sample = min(proposal_sample, sent_sample)
    with private_redis() as (server, client):
        inventory = PoolInventory(client)
        for i in range(pool_size):
            inventory.add(pool_number(i), POOL_COUNTRY)
        before = used_memory(client)
        tables_before, keys_before = _table_overhead(client)

        started = time.monotonic()
        failures = populate(server.url, conversations, processes, per_driver)
        elapsed = time.monotonic() - started
        if failures:
            raise RuntimeError(f"{failures} conversations did not become active")
        after = used_memory(client)
        tables_after, keys_after = _table_overhead(client)
        sizes, counts = usage_by_category(client)

        # The audit trail once the intros are out (the state it keeps for 30 days), on a
        # sample, as a used_memory delta and per key type.
        sent_ids = [conversation_id(i) for i in range(sent_sample)]
        intros_owed, _ = _sample_sizes(client, sent_ids)
        sent_before = used_memory(client)
        send_and_deliver(client, sent_ids)
        sent_delta = (used_memory(client) - sent_before) / max(1, sent_sample)
        intros_sent, vids = _sample_sizes(client, sent_ids)
        step = max(1, sent_sample // max(1, proposal_sample))
        proposals = measure_proposals(server.url, sent_ids[::step][:proposal_sample])
        peak = peak_rss_bytes(server_pid(client))

    per = {name: sizes.get(name, 0) / conversations for name in (*CORE, *AUDIT)}
    total = (after - before) / conversations
    tables = (
        (tables_after - tables_before) - (keys_after - keys_before) * DICT_ENTRY_BYTES
    ) / conversations
    core = sum(per[name] for name in CORE)
    audit = sum(per[name] for name in AUDIT)
    sent_total = total + sent_delta
    return {
        "conversations": conversations,
        "processes": processes,
        "seconds": elapsed,
        "rate_per_second": conversations / elapsed,
        "used_memory_before": before,
        "used_memory_after": after,
        "peak_rss_bytes": peak,
        "bytes_per_conversation": total,
        "core_bytes": core,
        "audit_bytes": audit,
        "key_tables_bytes": tables,
        "remainder_bytes": total - core - audit - tables,
        "by_type": per,
        "key_counts": {name: counts.get(name, 0) for name in (*CORE, *AUDIT)},
        "sent_sample": sent_sample,
        "sent_extra_bytes": sent_delta,
        "intro_records_owed_bytes": intros_owed,
        "intro_records_sent_bytes": intros_sent,
        "text_keys_bytes_after_send": vids,
        "bytes_per_conversation_sent": sent_total,
        "proposals": proposals,
        "goal_bytes": GOAL_BYTES,
        "meets_goal": sent_total <= GOAL_BYTES,
    }


def report(figures: dict[str, Any]) -> None:
    n = figures["conversations"]
    total = figures["bytes_per_conversation"]
    goal = figures["goal_bytes"]
    print(
        f"{n} conversations established through the real path in {figures['seconds']:.1f} s "
        f"({figures['rate_per_second']:.0f}/s, {figures['processes']} processes); "
        f"redis-server peak RSS {mib(figures['peak_rss_bytes'])}"
    )
    rows: list[list[object]] = []
    for name in CORE:
        rows.append([name, "core", figures["key_counts"][name], f"{figures['by_type'][name]:.0f}"])
    for name in ("intro outbound records", "message log lists"):
        rows.append([name, "audit", figures["key_counts"][name],
                     f"{figures['by_type'][name]:.0f}"])
    rows.append(["key and expiry tables (MEMORY STATS)", "-", "-",
                 f"{figures['key_tables_bytes']:.0f}"])
    rows.append(["remainder (allocator size classes, estimates)", "-", "-",
                 f"{figures['remainder_bytes']:.0f}"])
    rows.append(["total (INFO used_memory delta)", "", "-", f"{total:.0f}"])
    print_table(
        f"Bytes per live conversation just established, by key type ({n} conversations)",
        ["key type", "share", "keys", "bytes / conversation"], rows,
    )
    sample = figures["sent_sample"]
    print_table(
        f"The two intros sent and delivered (real MessageLog calls, {sample} conversations)",
        ["key type", "owed", "sent and delivered"],
        [
            ["intro outbound records", f"{figures['intro_records_owed_bytes']:.0f}",
             f"{figures['intro_records_sent_bytes']:.0f}"],
            ["bodies awaiting send", "-", f"{figures['text_keys_bytes_after_send']:.0f}"],
            ["used_memory delta per conversation", "", f"{figures['sent_extra_bytes']:+.0f}"],
        ],
    )
    sent = figures["bytes_per_conversation_sent"]
    print_table(
        "Bytes per live conversation versus the goal",
        ["figure", "baseline (pool, no conversation)", "bytes / conversation",
         "ratio to goal", "goal"],
        [
            ["conversation + routes + indexes", mib(figures["used_memory_before"]),
             f"{figures['core_bytes']:.0f}", f"{figures['core_bytes'] / goal:.2f}",
             f"<= {goal}"],
            ["the two intro SMS records (owed) + log list", "", f"{figures['audit_bytes']:.0f}",
             "", ""],
            ["key tables and remainder", "",
             f"{figures['key_tables_bytes'] + figures['remainder_bytes']:.0f}", "", ""],
            ["total, just established", "", f"{total:.0f}", f"{total / goal:.2f}", f"<= {goal}"],
            ["total, intros sent and delivered", "", f"{sent:.0f}", f"{sent / goal:.2f}",
             f"<= {goal}"],
        ],
    )
    print_table(
        "Layout proposals, measured on synthetic copies of sampled keys (not applied)",
        ["proposal", "bytes now / conversation", "saves / conversation"],
        [[name, f"{now:.0f}", f"{saved:.0f}"] for name, now, saved in figures["proposals"]],
    )
    verdict = "meets" if figures["meets_goal"] else "DOES NOT meet"
    print(f"Result: {sent:.0f} bytes per live conversation {verdict} the goal of <= {goal}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=50)
    parser.add_argument("--per-driver", type=int, default=3)
    parser.add_argument("--sent-sample", type=int, default=10_000)
    parser.add_argument("--proposal-sample", type=int, default=1_000)
    args = parser.parse_args(argv)
    figures = measure(
        conversations=args.conversations,
        processes=args.processes,
        pool_size=args.pool_size,
        per_driver=args.per_driver,
        sent_sample=args.sent_sample,
        proposal_sample=args.proposal_sample,
    )
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
