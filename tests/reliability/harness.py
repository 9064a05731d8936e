"""What every reliability scenario shares: a stack, conversations, a paced stream of texts with
faults injected at set moments, and the exact-once check against the sandbox and the audit trail.

The check: every inbound `messageId` the sandbox's handsets produced gave exactly one send at the
sandbox whose `client_ref` is `relay-<messageId>` (none lost, none doubled, nothing else relayed),
and each conversation's audit trail holds that inbound once and its relay once, submitted or
delivered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from devtools.stack import Stack, StackConfig

# Broker queues (shared.jobs.Queue) as kombu's Redis transport names its lists.
QUEUES = ("inbound", "outbound", "conversations", "receipts", "pool")
DONE = {"submitted", "delivered"}

# Short enough to keep each scenario well under a minute and a half on 2 cores; every other
# bound (retry backoff, multi-part wait) scales from the visibility timeout.
BASE_ENV = {
    "SMSPROXY_VISIBILITY_TIMEOUT_SECONDS": "10",
    "SMSPROXY_CONCAT_TIMEOUT_SECONDS": "3",
    "SMSPROXY_WORKER_CONCURRENCY": "8",
    # the shared limiter stays in the path, far above what a scenario sends
    "SMSPROXY_SEND_RATE_PER_SECOND": "200",
    "SMSPROXY_SEND_BURST": "50",
    # scenarios stream many texts through few conversations: the per-conversation caps
    # (tests/e2e/test_abuse_e2e.py) would refuse what the scenarios count on
    "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
    "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0",
}
# Vonage-style webhook retries, quick: 0.25, 0.5, 1, 2, 4, 8 s ... for up to 14 attempts.
SANDBOX = {"retry_base_seconds": 0.25, "retry_max_attempts": 14}


@contextmanager
def reliability_stack(
    state_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    sandbox: dict[str, Any] | None = None,
    pool_targets: str = "GB=2",
    beat: bool = False,
    provision: int | None = 2,
    sentinel: bool = False,
) -> Iterator[Stack]:
    config = StackConfig(
        state_dir=state_dir, pool_targets=pool_targets, workers=workers, beat=beat,
        sentinel=sentinel,
        sandbox_options={**SANDBOX, **(sandbox or {})}, extra_env={**BASE_ENV, **(env or {})},
    )
    with Stack(config) as stack:
        if provision:
            stack.provision_pool(expected=provision, timeout=60)
        yield stack


@dataclass(frozen=True)
class Conversation:
    id: str
    a: str
    b: str
    proxy_a: str  # the number a texts
    proxy_b: str  # the number b texts


def open_conversations(stack: Stack, count: int, timeout: float = 60.0) -> list[Conversation]:
    """`count` active conversations between distinct handsets, intros sent."""
    ids = []
    for i in range(count):
        response = stack.api("POST", "/v1/conversations", {"participants": [
            {"number": f"+4474001{i:05d}"}, {"number": f"+4474002{i:05d}"}]})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    conversations = []
    for i, conversation_id in enumerate(ids):
        body = stack.wait_for_status(conversation_id, "active", timeout=timeout)
        first, second = body["participants"]
        conversations.append(Conversation(conversation_id, f"4474001{i:05d}", f"4474002{i:05d}",
                                          first["proxy_number"][1:], second["proxy_number"][1:]))
    assert stack.sandbox is not None
    sandbox = stack.sandbox.client
    deadline = time.monotonic() + timeout
    while sum(1 for s in sandbox.sms_log() if str(s.get("client_ref")).startswith("intro-")) \
            < 2 * count:
        assert time.monotonic() < deadline, "intros not sent"
        time.sleep(0.2)
    return conversations


@dataclass
class Sent:
    conversation_id: str
    message_id: str
    at: float  # time.time() when the sandbox took the handset's text


@dataclass
class Stream:
    """Texts sent by the handsets, and when each injected fault happened."""

    sent: list[Sent] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def mark(self, what: str) -> float:
        now = time.time()
        self.events.append((what, now))
        return now


def run_stream(
    stack: Stack,
    conversations: list[Conversation],
    total: int,
    rate: float,
    faults: Sequence[tuple[float, str, Callable[[], object]]] = (),
    **send_options: Any,
) -> Stream:
    """Send `total` texts at `rate` per second round the conversations (alternating sides),
    while the calling thread runs each fault at its offset in seconds from the start."""
    assert stack.sandbox is not None
    sandbox = stack.sandbox.client
    stream = Stream()
    start = time.monotonic()

    def texts() -> None:
        for n in range(total):
            pause = start + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            c = conversations[n % len(conversations)]
            forward = (n // len(conversations)) % 2 == 0
            sender, proxy = (c.a, c.proxy_a) if forward else (c.b, c.proxy_b)
            try:
                ids = sandbox.send_from_handset(sender, proxy, f"msg {n} of {c.id[-6:]}",
                                                **send_options)
            except Exception as exc:  # noqa: BLE001 (reported, and the check fails)
                stream.errors.append(f"text {n}: {exc!r}")
                continue
            assert len(ids) == 1, ids  # short texts: one part, one messageId
            stream.sent.append(Sent(c.id, ids[0], time.time()))

    sender_thread = threading.Thread(target=texts, name="handsets", daemon=True)
    sender_thread.start()
    for offset, what, action in faults:
        pause = start + offset - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        stream.mark(what)
        action()
    sender_thread.join(timeout=total / rate + 120)
    assert not sender_thread.is_alive(), "handsets stuck"
    return stream


@dataclass
class Outcome:
    messages: int
    lost: list[str]
    duplicated: dict[str, int]
    unexpected: list[str]
    audit_problems: list[str]
    sends: dict[str, list[float]]  # relay-<messageId> -> when the sandbox took each send
    waited: float
    statuses: Counter[str]  # relay records by status in the audit trail

    @property
    def undelivered(self) -> int:
        """Relays still `submitted`: sent, but their delivery receipt never applied."""
        return self.statuses["submitted"]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.audit_problems)

    def describe(self) -> str:
        return (f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
                f"unexpected={len(self.unexpected)} audit_mismatches={len(self.audit_problems)} "
                f"delivered={self.statuses['delivered']}/{self.messages}")

    def details(self) -> str:
        return (f"lost {self.lost[:10]}, duplicated {dict(list(self.duplicated.items())[:10])}, "
                f"unexpected {self.unexpected[:10]}, audit {self.audit_problems[:10]}")


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def relay_sends(stack: Stack) -> dict[str, list[float]]:
    """relay-<messageId> -> the time of each send the sandbox accepted with that client_ref."""
    assert stack.sandbox is not None
    sends: dict[str, list[float]] = {}
    for entry in stack.sandbox.client.sms_log():
        ref = str(entry.get("client_ref") or "")
        if ref.startswith("relay-"):
            sends.setdefault(ref, []).append(_timestamp(entry["sent_at"]))
    return sends


def check_exactly_once(
    stack: Stack, stream: Stream, timeout: float = 60.0, settle: float = 2.0,
    before: set[str] | frozenset[str] = frozenset(), audit_wait: float = 10.0,
) -> Outcome:
    """Wait (bounded) until every text was relayed, let any extra send surface, then count.
    `before`: relays made before this stream (by an earlier one), left out of the count."""
    assert stack.sandbox is not None
    sandbox = stack.sandbox.client
    expected = {f"relay-{s.message_id}" for s in stream.sent}
    started = time.monotonic()
    deadline = started + timeout
    while not expected <= relay_sends(stack).keys() and time.monotonic() < deadline:
        time.sleep(0.5)
    waited = time.monotonic() - started
    try:
        sandbox.wait_until_idle(timeout=max(5.0, deadline - time.monotonic()))
    except TimeoutError:
        pass  # reported below through what is missing
    time.sleep(settle)  # a wrong second send would surface now
    sends = {ref: t for ref, t in relay_sends(stack).items() if ref not in before}
    counts = Counter({ref: len(times) for ref, times in sends.items()})
    lost = sorted(ref for ref in expected if counts[ref] == 0)
    duplicated = {ref: n for ref, n in counts.items() if n > 1}
    unexpected = sorted(ref for ref in counts if ref not in expected)
    audit, statuses = _audit(stack, stream, time.monotonic() + audit_wait, before)
    return Outcome(len(stream.sent), lost, duplicated, unexpected, audit, sends, waited, statuses)


def _audit(
    stack: Stack, stream: Stream, deadline: float, before: set[str] | frozenset[str]
) -> tuple[list[str], Counter[str]]:
    """Problems in the audit trails; polled briefly, as statuses follow the sends."""
    by_conversation: dict[str, list[str]] = {}
    for s in stream.sent:
        by_conversation.setdefault(s.conversation_id, []).append(s.message_id)
    while True:
        problems = []
        statuses: Counter[str] = Counter()
        for conversation_id, message_ids in by_conversation.items():
            response = stack.api("GET", f"/v1/conversations/{conversation_id}/messages")
            if response.status_code != 200:
                problems.append(f"{conversation_id}: HTTP {response.status_code}")
                continue
            trail = response.json()["messages"]
            inbound = Counter(m["id"] for m in trail if m["direction"] == "inbound")
            relays: dict[str, list[str]] = {}
            for m in trail:
                if m["direction"] == "outbound" and m.get("kind") == "relay":
                    relays.setdefault(m["id"], []).append(str(m.get("status")))
            for message_id in message_ids:
                if inbound[message_id] != 1:
                    problems.append(f"{message_id}: {inbound[message_id]} inbound records")
                records = relays.pop(f"relay-{message_id}", [])
                statuses.update(records)
                if len(records) != 1 or records[0] not in DONE:
                    problems.append(f"relay-{message_id}: relay records {records}")
            problems += [f"{ref}: relay of no text sent: {st}" for ref, st in relays.items()
                         if ref not in before]
        if (not problems and not statuses["submitted"]) or time.monotonic() > deadline:
            return problems, statuses
        time.sleep(0.5)


def summary(name: str, outcome: Outcome, faults: str, runtime: float, **figures: object) -> str:
    extra = "".join(f" {k}={v}" for k, v in figures.items())
    line = (f"RELIABILITY {name}: messages={outcome.messages} faults={faults} "
            f"{outcome.describe()}{extra} runtime={runtime:.1f}s")
    print(f"\n{line}")
    return line


def broker_backlog(stack: Stack) -> dict[str, int]:
    """LLEN of every broker queue (with kombu's priority lists) and the unacked hash size."""
    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        backlog = {}
        for queue in QUEUES:
            lengths = [client.llen(key) for key in client.scan_iter(match=f"{queue}*")
                       if client.type(key) == "list"]
            backlog[queue] = sum(lengths)
        backlog["unacked"] = int(client.hlen("unacked"))
        return backlog
    finally:
        client.close()


def exited(stack: Stack) -> dict[str, int | None]:
    """Processes of the stack (web, workers, beat) that have exited, with their exit codes."""
    return {name: p.returncode for name, p in stack.processes.items() if p.poll() is not None}


def log_lines(stack: Stack, prefix: str, needle: str) -> int:
    """How many lines of the logs of processes named `prefix`* contain `needle`."""
    return sum(
        line.count(needle)
        for log in stack.logs.glob(f"{prefix}*.log")
        for line in log.read_text(errors="replace").splitlines()
    )


class LostMessages(AssertionError):
    """Texts lost, or their audit record left wrong: what a known, reported bug produces
    (raised instead of a plain assertion so that `xfail(raises=LostMessages)` catches only
    that, and a duplicate or any other failure still fails the test)."""


def popped_but_unread(stack: Stack) -> int:
    """Broker connections whose BRPOP already took a message that nobody has read: kombu's
    BRPOP reply sits in the socket of a frozen (or dying) worker. Seen in CLIENT LIST as a
    connection whose last command is brpop, no longer blocked, idle for a second or more."""
    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        return sum(1 for c in client.client_list()
                   if c.get("cmd") == "brpop" and "b" not in c.get("flags", "")
                   and int(c.get("idle", 0)) >= 1)
    finally:
        client.close()
