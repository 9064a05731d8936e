"""Benchmark: create → active, over the REST API, against the provider latency it cannot avoid.

The whole stack (gunicorn, one worker process with the product's settings, the sandbox over
HTTPS adding 150 ms to every Vonage call). Conversations are created with POST
/v1/conversations at a steady rate (open loop: each request goes at its scheduled time, whether
or not earlier ones finished) in two cases:

* fresh: both participants never seen, so Number Insight is asked about both;
* returning: the same pairs again, after their first conversations were closed, so Number
  Insight is asked about neither (the cache: SMSPROXY_INSIGHT_CACHE_SECONDS).

Each create is timed from just before its POST to (a) the `conversation.active` callback reaching
a receiver on loopback (timestamped on arrival: no polling) and (b) the later of its two intro
sends accepted by the sandbox (the sandbox's own `sent_at`, taken after its injected latency,
milliseconds): "active" as a person sees it, which (b) is.

The limit, measured in the same run and interleaved with the creates: the chain of provider
calls that cannot be avoided, made straight to the sandbox through the product's own Vonage
client (one per thread, kept alive): for fresh, both lookups in parallel then both intro sends
in parallel (2 × 150 ms); for returning, both sends in parallel (1 × 150 ms). Added latency =
measured − the limit's median. Number Insight calls are counted at the sandbox in each case.

    .venv/bin/python -m bench.create_active [--creates 300] [--rate 10] [--rounds 3]
        [--variants product,queued-intros] [--before /path/to/a/checkout/of/an/earlier/commit]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from devtools import stack as stack_module
from devtools.stack import Stack, StackConfig
from shared.outbound import intro_ids
from shared.settings import Settings
from shared.vonage_gateway import VonageGateway

LATENCY_MS = 150
CASES = ("fresh", "returning")
# provider calls in the chain that cannot be avoided, in units of the provider latency
UNAVOIDABLE_HOPS = {"fresh": 2, "returning": 1}
LIMIT_SAMPLES = 10
# The product as configured, and settings that undo one step, to see what that step is worth.
VARIANTS: dict[str, dict[str, str]] = {
    "product": {},
    "queued-intros": {"SMSPROXY_INLINE_SENDS": "false"},
}
VARIANT_NOTES = {
    "product": "default settings",
    "before": "web and worker from the --before checkout, default settings",
    "queued-intros": "SMSPROXY_INLINE_SENDS=false: each intro a send_sms task",
}
HANDSET = "447499000001"
_TASK_LINE = re.compile(r'^smsproxy_tasks_total\{[^}]*task="([^"]+)"[^}]*\} ([0-9.e+]+)$')


class _Callbacks(BaseHTTPRequestHandler):
    """The marketplace's receiver: notes when each conversation's `active` event arrived (and
    which were reported closed)."""

    arrived: dict[str, float] = {}
    closed: set[str] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        at = time.time()
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            if event.get("type") == "conversation.active":
                self.arrived.setdefault(event["conversation"]["id"], at)
            elif event.get("type") == "conversation.closed":
                self.closed.add(event["conversation"]["id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def callback_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events"
    finally:
        server.shutdown()
        server.server_close()


class Limit:
    """The unavoidable chain, timed: two lanes, each with its own kept-alive Vonage client (the
    SDK client is not thread-safe), calling the sandbox as the worker would."""

    def __init__(self, settings: Settings, sender: str) -> None:
        self._pool = ThreadPoolExecutor(2)
        self._local = threading.local()
        self._settings = settings
        self._sender = sender
        self._sent = 0

    def _gateway(self) -> VonageGateway:
        gateway: VonageGateway | None = getattr(self._local, "gateway", None)
        if gateway is None:
            gateway = self._local.gateway = VonageGateway(self._settings)
        return gateway

    def _both(self, call: Callable[[int], object]) -> None:
        list(self._pool.map(call, range(2)))

    def chain(self, case: str, a: str, b: str) -> float:
        started = time.monotonic()
        if case == "fresh":
            self._both(lambda i: self._gateway().basic_insight((a, b)[i]))
        self._sent += 1
        ref = f"limit-{self._sent}"
        self._both(lambda i: self._gateway().send_sms(
            sender=self._sender, recipient=HANDSET, text="limit", client_ref=f"{ref}-{i}",
            callback=None))
        return time.monotonic() - started

    def close(self) -> None:
        self._pool.shutdown()


def _pairs(case_round: int, count: int) -> list[tuple[str, str]]:
    # valid GB mobile numbers, new in every round so that "fresh" stays fresh
    return [(f"44741{case_round}{i:06d}", f"44742{case_round}{i:06d}") for i in range(count)]


def _task_counts(stack: Stack) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in stack.api("GET", "/metrics").text.splitlines():
        found = _TASK_LINE.match(line)
        if found:
            counts[found.group(1)] += int(float(found.group(2)))
    return counts


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run_case(
    stack: Stack, callback_url: str, pairs: list[tuple[str, str]], rate: float
) -> dict[str, Any]:
    """Create one conversation per pair at `rate` per second; time each to active."""
    sandbox = stack.sandbox
    assert sandbox is not None
    lookups_before = sandbox.client.stats()["insight_lookups"]
    tasks_before = _task_counts(stack)
    posted: dict[str, float] = {}
    errors: list[str] = []

    def create(i: int, start: float) -> None:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        a, b = pairs[i]
        at = time.time()
        try:
            response = stack.api("POST", "/v1/conversations", {
                "participants": [{"number": f"+{a}"}, {"number": f"+{b}"}],
                "callback_url": callback_url})
        except requests.RequestException as exc:  # counted, as a refusal would be
            errors.append(type(exc).__name__)
            return
        if response.status_code != 202:
            errors.append(f"{response.status_code}")
            return
        posted[response.json()["id"]] = at

    start = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: create(i, start), range(len(pairs))))
    wanted = {ref for cid in posted for ref in intro_ids(cid)}
    deadline = time.monotonic() + 120
    while True:
        sent = {s["client_ref"]: s for s in sandbox.client.sms_log() if s["client_ref"] in wanted}
        if len(sent) >= len(wanted) and len(_Callbacks.arrived.keys() & posted.keys()) \
                >= len(posted):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(1)  # let any duplicate surface
    log = [s for s in sandbox.client.sms_log() if s["client_ref"] in wanted]
    refs = Counter(s["client_ref"] for s in log)
    to_intros, to_active, series = [], [], []
    for cid, at in sorted(posted.items(), key=lambda item: item[1]):
        first, second = intro_ids(cid)
        if first in refs and second in refs:
            done = max(_ts(s["sent_at"]) for s in log if s["client_ref"] in (first, second))
            to_intros.append(done - at)
            series.append(round((done - at) * 1000))
        if cid in _Callbacks.arrived:
            to_active.append(_Callbacks.arrived[cid] - at)
    tasks_after = _task_counts(stack)
    return {
        "ids": list(posted),
        "intros": to_intros,
        "active": to_active,
        "series": series,
        "incomplete": len(posted) - len(to_intros) + len(errors),
        "refused": dict(Counter(errors)),
        "load": os.getloadavg()[0],
        "duplicated": sum(1 for n in refs.values() if n > 1),
        "lookups": sandbox.client.stats()["insight_lookups"] - lookups_before,
        "tasks": {k: tasks_after[k] - tasks_before[k] for k in tasks_after
                  if tasks_after[k] > tasks_before[k]},
    }


def close_all(stack: Stack, ids: list[str], timeout: float = 60) -> None:
    """Close conversations and wait for their `closed` events: the next case starts on a
    worker with nothing of this one left to do."""
    for cid in ids:
        stack.api("DELETE", f"/v1/conversations/{cid}")
    deadline = time.monotonic() + timeout
    while not _Callbacks.closed >= set(ids) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextmanager
def code_from(tree: Path | None) -> Iterator[None]:
    """Web and worker run from `tree` (a checkout of another commit) instead of this one; the
    sandbox and this driver stay this tree's."""
    if tree is None:
        yield
        return
    saved = stack_module.ROOT
    stack_module.ROOT = tree.resolve()
    try:
        yield
    finally:
        stack_module.ROOT = saved


def run_variant(
    tmp: Path, callback_url: str, env: dict[str, str], round_index: int, per_round: int,
    rate: float, tree: Path | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """One stack of this variant: the limit, then the fresh case, the limit, the returning
    case (the same pairs, their first conversations closed)."""
    config = StackConfig(
        state_dir=tmp, pool_targets="GB=3", sandbox_options={"latency_ms": 0},
        # latency is measured, not the limits: no send rate, no client request rate
        extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": "0", "SMSPROXY_API_RATE_LIMIT": "none",
                   "SMSPROXY_CALLBACK_SECRET": "bench-callback-secret", **env},
    )
    results: dict[str, dict[str, Any]] = {}
    limits: dict[str, list[float]] = {}
    with code_from(tree), Stack(config) as stack:
        sandbox = stack.sandbox
        assert sandbox is not None
        numbers = stack.provision_pool(expected=3)
        sandbox.client.set_faults(latency_ms=LATENCY_MS)
        limit = Limit(Settings.from_env(stack.env), numbers[0]["number"].lstrip("+"))
        try:
            # both lanes' connections opened before anything is timed, as the worker's are
            limit.chain("fresh", "447450000001", "447450000002")
            pairs = _pairs(round_index, per_round)
            for case in CASES:
                # the limit just before each case, on numbers of its own
                limits[case] = [limit.chain(case, f"44743{round_index}{i:06d}",
                                            f"44744{round_index}{i:06d}")
                                for i in range(LIMIT_SAMPLES)]
                results[case] = run_case(stack, callback_url, pairs, rate)
                if case == "fresh":  # the returning case opens new conversations
                    close_all(stack, results[case]["ids"])
        finally:
            limit.close()
    return results, limits


def measure(
    creates: int, rate: float, rounds: int, variants: tuple[str, ...] = ("product",),
    before: Path | None = None, keep: Path | None = None,
) -> dict[str, Any]:
    """Every variant once per round, in turn (each on a new stack), so that the machine's
    noise falls on all of them alike; figures are medians over rounds. `before`, a checkout
    of an earlier commit, adds the variant "before": that code with default settings."""
    if before is not None:
        variants = (*variants, "before")
    per_round = max(1, creates // rounds)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        v: {case: [] for case in CASES} for v in variants}
    limits: dict[str, dict[str, list[float]]] = {v: {case: [] for case in CASES}
                                                 for v in variants}
    with ExitStack() as scratch, callback_receiver() as callback_url:
        # with --keep the stacks' logs stay; else their directory goes at the end
        tmp = tempfile.mkdtemp(dir=keep, prefix="create-active-") if keep is not None \
            else scratch.enter_context(tempfile.TemporaryDirectory())
        for r in range(rounds):
            for variant in variants:
                outcome, limit = run_variant(
                    Path(tmp) / f"{variant}-{r}", callback_url, VARIANTS.get(variant, {}), r,
                    per_round, rate, before if variant == "before" else None)
                for case in CASES:
                    # each round keeps its own limit: the least disturbed round is judged by it
                    outcome[case]["limit"] = statistics.median(limit[case])
                    results[variant][case].append(outcome[case])
                    limits[variant][case] += limit[case]
    return {"creates": per_round * rounds, "rounds": rounds,
            "variants": {v: summarise(results[v], limits[v]) for v in variants}}


def summarise(
    results: dict[str, list[dict[str, Any]]], limits: dict[str, list[float]]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for case in CASES:
        rounds = results[case]
        limit = statistics.median(limits[case])
        intros = [x for r in rounds for x in r["intros"]]
        active = [x for r in rounds for x in r["active"]]
        tasks: Counter[str] = Counter()
        for r in rounds:
            tasks.update(r["tasks"])
        made = sum(len(r["ids"]) for r in rounds)
        figures[case] = {
            "limit_ms": limit * 1000,
            "limit_p99_ms": _percentile(limits[case], 0.99) * 1000,
            "theory_ms": UNAVOIDABLE_HOPS[case] * LATENCY_MS,
            # medians over rounds of each round's percentile
            "p50_ms": statistics.median(_percentile(r["intros"], 0.5) for r in rounds) * 1000,
            "p99_ms": statistics.median(_percentile(r["intros"], 0.99) for r in rounds) * 1000,
            "all_p50_ms": _percentile(intros, 0.5) * 1000,
            "all_p99_ms": _percentile(intros, 0.99) * 1000,
            "active_p50_ms": _percentile(active, 0.5) * 1000,
            "active_p99_ms": _percentile(active, 0.99) * 1000,
            "lookups": sum(r["lookups"] for r in rounds),
            "made": made,
            "incomplete": sum(r["incomplete"] for r in rounds),
            "refused": dict(sum((Counter(r["refused"]) for r in rounds), Counter())),
            "round_load": [r["load"] for r in rounds],
            "duplicated": sum(r["duplicated"] for r in rounds),
            "tasks_per_create": {k: v / made for k, v in sorted(tasks.items())} if made else {},
            "round_p50_ms": [_percentile(r["intros"], 0.5) * 1000 for r in rounds],
            "round_p99_ms": [_percentile(r["intros"], 0.99) * 1000 for r in rounds],
            "series_ms": [r["series"] for r in rounds],
        }
        f = figures[case]
        # the least disturbed round (lowest p50): on a shared machine, what the code does when
        # the others leave it a core (as timeit takes the best of its repeats)
        best = min(range(len(rounds)), key=lambda i: f["round_p50_ms"][i]) if rounds else 0
        f["best_p50_ms"], f["best_p99_ms"] = f["round_p50_ms"][best], f["round_p99_ms"][best]
        f["best_load"] = f["round_load"][best] if rounds else float("nan")
        f["best_limit_ms"] = rounds[best]["limit"] * 1000 if rounds else float("nan")
        f["added_p50_ms"] = f["p50_ms"] - f["limit_ms"]
        f["added_p99_ms"] = f["p99_ms"] - f["limit_ms"]
        f["ratio_p50"] = f["p50_ms"] / f["limit_ms"]
        f["ratio_p99"] = f["p99_ms"] / f["limit_ms"]
    return figures


def report(f: dict[str, Any], rate: float) -> None:
    print(f"create -> active, {f['creates']} creates per case and variant at {rate:g}/s over "
          f"{f['rounds']} round(s), provider latency {LATENCY_MS} ms, one worker process "
          "(product settings)")
    for variant, figures in f["variants"].items():
        print(f"variant {variant} ({VARIANT_NOTES[variant]}):")
        for case in CASES:
            c = figures[case]
            tasks = ", ".join(f"{k} {v:.2f}" for k, v in c["tasks_per_create"].items())
            print(f"  {case}:")
            print(f"    limit (unavoidable chain, {UNAVOIDABLE_HOPS[case]} x {LATENCY_MS} ms = "
                  f"{c['theory_ms']} ms): median {c['limit_ms']:.0f} ms, "
                  f"p99 {c['limit_p99_ms']:.0f} ms")
            print(f"    create -> both intros accepted  p50 {c['p50_ms']:.0f} ms  p99 "
                  f"{c['p99_ms']:.0f} ms  ratio p50 {c['ratio_p50']:.2f}  "
                  f"p99 {c['ratio_p99']:.2f}")
            print(f"    added over the limit            p50 {c['added_p50_ms']:.0f} ms  p99 "
                  f"{c['added_p99_ms']:.0f} ms")
            print(f"    least disturbed round            p50 {c['best_p50_ms']:.0f} ms  p99 "
                  f"{c['best_p99_ms']:.0f} ms  against its own limit {c['best_limit_ms']:.0f} ms:"
                  f" ratio p50 {c['best_p50_ms'] / c['best_limit_ms']:.2f}  p99 "
                  f"{c['best_p99_ms'] / c['best_limit_ms']:.2f}  (load {c['best_load']:.1f})")
            print(f"    create -> active callback        p50 {c['active_p50_ms']:.0f} ms  p99 "
                  f"{c['active_p99_ms']:.0f} ms")
            print(f"    Number Insight calls {c['lookups']} for {c['made']} creates "
                  f"({c['lookups'] / max(1, c['made']):.2f} each); incomplete "
                  f"{c['incomplete']}, duplicated intros {c['duplicated']} (must be 0)")
            print(f"    task runs per create: {tasks}")
            if c["refused"]:
                print(f"    creates refused, by HTTP status: {c['refused']}")
            print("    each round p50 / p99 (1-minute load average at its end): " + ", ".join(
                f"{a:.0f} / {b:.0f} ms ({load:.1f})" for a, b, load
                in zip(c["round_p50_ms"], c["round_p99_ms"], c["round_load"], strict=True)))


def round_trips() -> dict[str, Any]:
    """Redis round trips of one create's worker path (establish, then both intro sends), fresh
    and returning, counted at redis-py's socket writes (a pipeline is one) in this process
    over a private Redis, with an in-memory Vonage; by the shared/ function that made each."""
    import traceback

    from redis.connection import Connection

    from bench.common import bench_settings, private_redis
    from shared.domain import Conversation, ConversationStatus, Participant
    from shared.wiring import Services
    from tests.doubles import FakeVonage

    counted: dict[str, Counter[str]] = {}
    active: list[Counter[str]] = []
    original: Callable[..., None] = Connection.send_packed_command

    def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        if active:
            caller = next((f"{f.filename.rsplit('/shared/', 1)[1]}:{f.name}"
                           for f in reversed(traceback.extract_stack())
                           if "/shared/" in f.filename), "?")
            active[0][caller] += 1
        original(self, command, check_health)

    Connection.send_packed_command = counting  # type: ignore[method-assign,assignment]
    try:
        with private_redis() as (_server, client):
            svc = Services.from_settings(bench_settings(SMSPROXY_SEND_RATE_PER_SECOND="0"),
                                         client)
            for number in ("447700900100", "447700900101", "447700900102"):
                svc.inventory.add(number, "GB")
            vonage = FakeVonage()
            pairs = {"warm-up": ("447400100001", "447400100002"),
                     "fresh": ("447400100003", "447400100004"),
                     "returning": ("447400100003", "447400100004")}
            for n, (name, (a, b)) in enumerate(pairs.items()):
                conversation = Conversation(
                    id=f"{n:032x}", participants=(Participant(a), Participant(b)),
                    status=ConversationStatus.PENDING, created_at=time.time(),
                    ttl_seconds=3600)
                svc.conversation_store.add(conversation)
                counted[f"{name} establish"] = Counter()
                active[:] = [counted[f"{name} establish"]]
                outcome = svc.conversations.establish(conversation.id, vonage)
                counted[f"{name} sends"] = Counter()
                active[:] = [counted[f"{name} sends"]]
                for outbound_id in outcome.intro_ids:
                    svc.sender.send(outbound_id, vonage)
                active.clear()
    finally:
        Connection.send_packed_command = original  # type: ignore[method-assign]
    return {k: dict(v) for k, v in counted.items() if not k.startswith("warm-up")}


def report_round_trips(trips: dict[str, Any]) -> None:
    print("Redis round trips on the worker's path of one create (in-process count):")
    for step, callers in trips.items():
        detail = ", ".join(f"{k} {v}" for k, v in sorted(callers.items(), key=lambda x: -x[1]))
        print(f"  {step}: {sum(callers.values())}  ({detail})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--creates", type=int, default=300,
                        help="per case and variant, over all rounds")
    parser.add_argument("--rate", type=float, default=10.0, help="creates per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="product",
                        help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--before", type=Path,
                        help="a checkout of an earlier commit: its web and worker measured too, "
                        "interleaved (variant 'before')")
    parser.add_argument("--keep", type=Path,
                        help="keep each stack's logs in a new directory under this one")
    parser.add_argument("--round-trips", action="store_true",
                        help="only count the Redis round trips of one create (no stack)")
    parser.add_argument("--dump", type=Path, help="write every figure, each create's latency "
                        "in the order they were made included, to this JSON file")
    options = parser.parse_args(argv)
    if options.round_trips:
        report_round_trips(round_trips())
        return 0
    variants = tuple(v.strip() for v in options.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    figures = measure(options.creates, options.rate, options.rounds, variants, options.before,
                      options.keep)
    report(figures, options.rate)
    if options.dump:
        options.dump.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
