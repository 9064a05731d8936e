"""The operations console's logic: sign-ins, the audit of actions, and what each page shows.

web/console.py renders these; nothing here knows Flask. What a page shows of a person is what
/v1 already shows that client, with every participant's real number masked (last four digits):
a support agent finds a conversation by a number, but the screen never shows it whole.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import redis
from prometheus_client.core import Metric

from shared.api_models import CONVERSATION_ID_PATTERN, RequestError, parse_block_request
from shared.blocked_numbers import BlockedNumber
from shared.clients import ApiClient, ApiClients
from shared.domain import ERASED, Conversation
from shared.gauges import ALIVE_WITHIN_SECONDS
from shared.jobs import Queue
from shared.keys import DEFAULT_RETENTION_SECONDS, Keys
from shared.messages import TrailEntry
from shared.metrics import (
    FAMILIES,
    RELAY_LATENCY,
    SENDS,
    WEBHOOK_DURATION,
    WEBHOOKS,
    Counters,
    parse_series,
)
from shared.opt_outs import OptOut
from shared.phone import InvalidNumber, country_of, mask, to_e164, to_msisdn
from shared.pool_inventory import PoolInventory, PoolNumber

# What a session id the console hands out looks like (secrets.token_urlsafe(32)); anything else
# in a cookie is not looked up at all.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)
# The audit keeps at most this many entries, and none older than the retention.
AUDIT_CAP = 10_000


# -- sign-ins ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One client signed in to the console."""

    id: str
    client: str
    signed_in_at: float
    expires_at: float


def _fingerprint(api_client: ApiClient) -> str:
    """Which token the client signed in with (a digest of its digest): a session dies with its
    token when the operator rotates it, and the store never holds the token's own digest."""
    return hashlib.sha256(api_client.token_digest).hexdigest()[:32]


class ConsoleSessions:
    """Sign-ins kept in Redis, so that signing out (or the lifetime running out) ends them for
    good: the cookie only names a session, and a copied cookie dies with it."""

    def __init__(
        self, client: redis.Redis, *, lifetime_seconds: int, keys: Keys | None = None
    ) -> None:
        self._redis = client
        self._lifetime = lifetime_seconds
        self._keys = keys or Keys()

    def start(self, api_client: ApiClient, at: float) -> ConsoleSession:
        """A new session for a client that proved its token (a new id at every sign-in)."""
        session_id = secrets.token_urlsafe(32)
        key = self._keys.console_session(session_id)
        pipe = self._redis.pipeline()
        pipe.hset(key, mapping={
            "client": api_client.name, "token": _fingerprint(api_client), "at": at,
        })
        pipe.expire(key, self._lifetime)
        pipe.execute()
        return ConsoleSession(session_id, api_client.name, at, at + self._lifetime)

    def find(self, session_id: str, clients: ApiClients, at: float) -> ConsoleSession | None:
        """The live session with this id, or None: unknown, expired, signed out, or its
        client's token is no longer the one it signed in with."""
        if not _SESSION_ID.fullmatch(session_id):
            return None
        data = self._redis.hgetall(self._keys.console_session(session_id))
        if not data:
            return None
        signed_in_at = float(data.get("at", 0))
        # Redis expires the key; the check on the time as well covers a clock-skewed replica
        if at >= signed_in_at + self._lifetime:
            return None
        current = next((c for c in clients.clients if c.name == data.get("client")), None)
        if current is None or _fingerprint(current) != data.get("token"):
            return None
        return ConsoleSession(
            session_id, current.name, signed_in_at, signed_in_at + self._lifetime
        )

    def end(self, session_id: str) -> None:
        if _SESSION_ID.fullmatch(session_id):
            self._redis.delete(self._keys.console_session(session_id))


# -- the audit of actions ------------------------------------------------------------------


class ConsoleAction(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    CLOSE = "close"
    RUN_MAINTENANCE = "run_maintenance"
    DRAIN = "drain"
    BLOCK = "block"
    UNBLOCK = "unblock"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    who: str
    action: str
    subject: str


class ConsoleAudit:
    """Who did what in the console, when: a Redis stream, capped and trimmed by age. Each
    action is also counted (`smsproxy.console.<action>`)."""

    def __init__(
        self, client: redis.Redis, counters: Counters, *,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS, keys: Keys | None = None,
    ) -> None:
        self._redis = client
        self._counters = counters
        self._retention = retention_seconds
        self._keys = keys or Keys()

    def record(self, who: str, action: ConsoleAction, subject: str = "") -> None:
        """`subject` names what was acted on: a conversation id, a masked number, never a
        whole phone number."""
        key = self._keys.console_audit()
        oldest_ms = int((time.time() - self._retention) * 1000)
        pipe = self._redis.pipeline()
        pipe.xadd(key, {"who": who, "action": action.value, "subject": subject},
                  maxlen=AUDIT_CAP, approximate=True)
        # exact, unlike the cap: "~" would keep a whole stale node (100 entries) past its time
        pipe.xtrim(key, minid=f"{max(oldest_ms, 0)}-0", approximate=False)
        pipe.execute()
        self._counters.incr(f"smsproxy.console.{action.value}")

    def recent(self, limit: int = 200) -> list[AuditEntry]:
        """The newest entries first."""
        entries = []
        found = self._redis.xrevrange(self._keys.console_audit(), count=limit) or []
        for entry_id, fields in found:
            data = fields or {}
            millis = int(str(entry_id).partition("-")[0])
            entries.append(AuditEntry(
                at=millis / 1000, who=str(data.get("who", "")),
                action=str(data.get("action", "")), subject=str(data.get("subject", "")),
            ))
        return entries


# -- overview ------------------------------------------------------------------------------


def read_counters(counters: Counters) -> Mapping[str, float]:
    """Every counter by its dotted name: the console's one read of the metrics (kept to one
    place, so that a change in how counters are kept changes only this)."""
    return counters.snapshot()


# Failures worth a person's look, by the counter that counts each, with what it means.
FAILURES: tuple[tuple[str, str], ...] = (
    ("smsproxy.outbound.failed", "sends failed (permanent error or attempts used up)"),
    ("smsproxy.outbound.expired", "sends given up: too old to send"),
    ("smsproxy.outbound.throttled", "sends throttled by Vonage (retried)"),
    ("smsproxy.conversations.failed", "conversations failed"),
    ("smsproxy.pool.exhausted", "creates that found no free number"),
    ("smsproxy.pool.shortfall", "numbers maintenance could not buy"),
    ("smsproxy.pool.maintenance_failed", "pool maintenance runs stopped by Vonage"),
    ("smsproxy.pool.auth_failed", "Vonage refused the credentials"),
    ("smsproxy.pool.conversations_lost", "conversations lost with a number"),
    ("smsproxy.inbound.unrouted", "texts with no live route (not relayed)"),
    ("smsproxy.inbound.binary", "binary messages dropped"),
    ("smsproxy.inbound.concat_incomplete", "multi-part texts relayed with parts missing"),
    ("smsproxy.receipts.unmatched", "delivery receipts matching no send"),
    ("smsproxy.callbacks.refused", "callbacks refused (unsafe address)"),
    ("smsproxy.callbacks.dropped", "callbacks dropped"),
)


@dataclass(frozen=True, slots=True)
class CountryPool:
    """One country's pool: its numbers, how many take new conversations, what it costs."""

    country: str
    numbers: tuple[PoolNumber, ...]
    target: int
    allocatable: int
    live_routes: int
    monthly_cost: float

    @property
    def draining(self) -> int:
        return sum(1 for n in self.numbers if n.state == "draining")


@dataclass(frozen=True, slots=True)
class QueueReading:
    """One broker queue as /metrics reads it: jobs waiting, and how long the oldest has."""

    name: str
    depth: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class Readings:
    """The gauges /metrics reads at scrape time (shared/gauges.py), as the overview shows them;
    `queues` None when the broker is not a Redis (its own monitoring has them)."""

    queues: tuple[QueueReading, ...] | None
    outbox_jobs: int
    sends_open: int
    sends_in_doubt: int
    workers_alive: int
    alive_within_seconds: float = ALIVE_WITHIN_SECONDS


@dataclass(frozen=True, slots=True)
class Latency:
    """p50 and p95 of one histogram (None: nothing observed), and how many observations."""

    label: str
    count: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    webhooks: tuple[tuple[str, int], ...]
    relays: tuple[tuple[str, int], ...]
    sends: tuple[tuple[str, int], ...]
    conversations: tuple[tuple[str, int], ...]
    failures: tuple[tuple[str, int], ...]
    readings: Readings
    latencies: tuple[Latency, ...]
    pool: tuple[CountryPool, ...]


def _group(counts: Mapping[str, float], *families: str) -> tuple[tuple[str, int], ...]:
    """The series of `families` as (their label values joined by dots, or the family's last
    word for one without labels; count), sorted."""
    found: dict[str, int] = {}
    for key, value in counts.items():
        name, labels = parse_series(key)
        if name not in families:
            continue
        label = ".".join(labels.values()) if labels else name.removesuffix("_total").split("_")[-1]
        found[label] = found.get(label, 0) + int(value)
    return tuple(sorted(found.items()))


def _cost(raw: str | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0


def pool_by_country(
    inventory: PoolInventory, targets: Mapping[str, int]
) -> tuple[CountryPool, ...]:
    """Every country the pool holds or is asked to hold."""
    numbers = inventory.numbers()
    countries = sorted(set(targets) | set(inventory.countries()) | {n.country for n in numbers})
    found = []
    for country in countries:
        mine = tuple(n for n in numbers if n.country == country)
        found.append(CountryPool(
            country=country, numbers=mine, target=targets.get(country, 0),
            allocatable=inventory.size(country), live_routes=sum(n.routes for n in mine),
            monthly_cost=round(sum(_cost(n.monthly_cost) for n in mine), 2),
        ))
    return tuple(found)


def broker_is_redis(broker_url: str) -> bool:
    """Whether the queues are Redis lists the gauges can read (the store's Redis or another)."""
    return urlsplit(broker_url).scheme in {"redis", "rediss"}


def readings(metrics: Iterable[Metric], *, queues_read: bool = True) -> Readings:
    """The overview's figures from the gauge families of shared/gauges.py (the very readings
    /metrics exports, so the two never disagree)."""
    values: dict[str, dict[str, float]] = {}
    for family in metrics:
        for sample in family.samples:
            values.setdefault(sample.name, {})[sample.labels.get("queue", "")] = sample.value
    depth, age = values.get("smsproxy_queue_depth", {}), values.get(
        "smsproxy_queue_oldest_age_seconds", {})

    def one(name: str) -> int:
        return int(values.get(name, {}).get("", 0))

    return Readings(
        queues=tuple(
            QueueReading(q.value, int(depth.get(q.value, 0)), float(age.get(q.value, 0.0)))
            for q in Queue
        ) if queues_read else None,
        outbox_jobs=one("smsproxy_outbox_jobs"),
        sends_open=one("smsproxy_outbound_open"),
        sends_in_doubt=one("smsproxy_outbound_in_doubt"),
        workers_alive=one("smsproxy_workers_alive"),
    )


def histogram_buckets(
    counts: Mapping[str, float], family: str, **labels: str
) -> dict[float, float]:
    """A histogram's observations per bucket (upper bound -> count, not cumulative, as the
    hash keeps them), summed over every series whose labels include `labels`. Every bucket of
    the family is there, at zero when nothing fell in it: a bucket's lower bound is the bound
    before it, whether or not that one was ever observed."""
    spec = FAMILIES[family]
    found: dict[float, float] = dict.fromkeys((*spec.buckets, math.inf), 0.0)
    for key, value in counts.items():
        name, series = parse_series(key)
        if name != f"{family}_bucket" or "le" not in series:
            continue
        if any(series.get(k) != v for k, v in labels.items()):
            continue
        bound = math.inf if series["le"] == "+Inf" else float(series["le"])
        found[bound] = found.get(bound, 0) + value
    return found


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a histogram's buckets (upper bound -> observations in that bucket),
    estimated as Prometheus's histogram_quantile does: linearly within the bucket it falls in
    (the first from 0); in the +Inf bucket, the highest finite bound. None with no observation.
    Every bucket must be given, empty ones too (their bounds are the next ones' lower bounds)."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    lower, running = 0.0, 0.0
    bounds = sorted(buckets)
    for bound in bounds:
        in_bucket = buckets[bound]
        if in_bucket > 0 and running + in_bucket >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            return lower + (bound - lower) * (rank - running) / in_bucket
        running += in_bucket
        lower = bound if not math.isinf(bound) else lower
    return lower


def latency(label: str, buckets: Mapping[float, float]) -> Latency:
    """p50 and p95 of one histogram's buckets (every bucket given, as histogram_buckets does)."""
    return Latency(label, int(sum(buckets.values())), quantile(0.5, buckets),
                   quantile(0.95, buckets))


# The latencies the overview shows: (what, histogram family, labels to keep).
LATENCIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("webhook received → relay accepted by Vonage", RELAY_LATENCY, {}),
    ("inbound webhook handling", WEBHOOK_DURATION, {"kind": "inbound"}),
    ("receipt webhook handling", WEBHOOK_DURATION, {"kind": "receipt"}),
)


def overview(
    counts: Mapping[str, float],
    gauges: Readings,
    pool: tuple[CountryPool, ...],
) -> Overview:
    return Overview(
        webhooks=_group(counts, WEBHOOKS),
        relays=_group(counts, "smsproxy_inbound_relayed_total", "smsproxy_inbound_dropped_total"),
        sends=_group(counts, SENDS),
        conversations=_group(counts, "smsproxy_conversations_total"),
        failures=tuple((label, int(counts.get(name, 0))) for name, label in FAILURES),
        readings=gauges,
        latencies=tuple(
            latency(label, histogram_buckets(counts, family, **labels))
            for label, family, labels in LATENCIES
        ),
        pool=pool,
    )


# -- conversations -------------------------------------------------------------------------


class SearchError(ValueError):
    """What the search box holds is neither a conversation id nor a phone number."""


@dataclass(frozen=True, slots=True)
class Search:
    """A conversation id, or a participant's msisdn (never both)."""

    conversation_id: str | None = None
    msisdn: str | None = None


def parse_search(raw: str) -> Search:
    text = raw.strip()
    if _CONVERSATION_ID.fullmatch(text):
        return Search(conversation_id=text)
    if _CONVERSATION_ID.fullmatch(text.lower()) and len(text) == 32:
        return Search(conversation_id=text.lower())  # an old hex id typed in capitals
    if not text or len(text) > 32:
        raise SearchError("enter a conversation id or a phone number in international form")
    try:
        return Search(msisdn=to_msisdn(text))
    except InvalidNumber as exc:
        raise SearchError(f"not a conversation id, nor a phone number: {exc}") from None


def masked(msisdn: str | None) -> str:
    """A person's number as the console shows it."""
    if msisdn == ERASED:
        return "erased"
    return "+" + mask(msisdn) if msisdn else "-"


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    number: str  # masked
    proxy_number: str | None  # a pool number: the proxy's own, shown whole as in /v1/numbers
    display_name: str | None
    country: str | None
    opted_out_at: float | None = None  # when they texted STOP to their proxy number, if so

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None


@dataclass(frozen=True, slots=True)
class TrailRow:
    """One message of the audit trail, people's numbers masked."""

    id: str
    direction: str
    kind: str | None
    sender: str
    recipient: str | None
    at: float | None
    state: str | None
    parts: int
    part_receipts: tuple[str | None, ...]
    attempts: int
    error: str | None
    text: str | None
    masked: int = 0  # contact details its relayed text had hidden
    participant_state: str | None = None  # the sender's opt-out state it set (STOP, START)
    not_relayed: str | None = None  # why it was not relayed
    not_relayed_means: str | None = None  # that reason in words


# Why an inbound text was not relayed (shared/inbound_rules.py DropReason), in words.
NOT_RELAYED: dict[str, str] = {
    "unrouted": "no live route from the sender",
    "binary": "a binary message, which a text cannot carry",
    "keyword": "a keyword (STOP, START, HELP): answered, never relayed",
    "recipient_opted_out": "the other side opted out of their number",
    "own_number": "from or to one of the account's numbers (a loop)",
    "blocked": "from or to a blocked number",
    "rate_capped": "over the conversation's relay rate",
    "daily_capped": "over the conversation's relays per 24 h",
}


def opt_out_pairs(conversation: Conversation) -> list[tuple[str, str]]:
    """The (person, proxy number) of each participant whose opt-out can be looked up."""
    return [(p.number, p.proxy_number) for p in conversation.participants
            if p.proxy_number and p.number != ERASED]


def participants(
    conversation: Conversation, opt_outs: Sequence[OptOut | None] = ()
) -> tuple[ParticipantRow, ...]:
    """`opt_outs`: the OptOuts store's answer for `opt_out_pairs(conversation)`, in order."""
    found = dict(zip(opt_out_pairs(conversation), opt_outs, strict=False))
    rows = []
    for p in conversation.participants:
        opt_out = found.get((p.number, p.proxy_number)) if p.proxy_number else None
        rows.append(ParticipantRow(
            number=masked(p.number),
            proxy_number=to_e164(p.proxy_number) if p.proxy_number else None,
            display_name=p.display_name, country=p.country,
            opted_out_at=opt_out.at if opt_out is not None else None,
        ))
    return tuple(rows)


def trail_rows(
    conversation: Conversation, trail: Sequence[TrailEntry], *, with_text: bool
) -> tuple[TrailRow, ...]:
    """The trail as the console lists it: only the conversation's proxy numbers are whole."""
    proxies = {p.proxy_number for p in conversation.participants if p.proxy_number}

    def shown(msisdn: str) -> str:
        return to_e164(msisdn) if msisdn in proxies else masked(msisdn)

    rows = []
    for entry in trail:
        if entry.record == "in":
            rows.append(TrailRow(
                id=entry.id, direction="inbound", kind=None, sender=shown(entry.sender),
                recipient=None, at=entry.received_at, state="received", parts=entry.parts,
                part_receipts=(), attempts=0, error=None,
                text=entry.text if with_text else None, masked=entry.masked,
                participant_state=entry.participant_state, not_relayed=entry.not_relayed,
                not_relayed_means=NOT_RELAYED.get(entry.not_relayed or ""),
            ))
        else:
            error = " ".join(e for e in (entry.error_code, entry.error_reason) if e) or None
            rows.append(TrailRow(
                id=entry.id, direction="outbound", kind=entry.kind, sender=shown(entry.sender),
                recipient=shown(entry.recipient), at=entry.submitted_at or entry.created_at,
                state=entry.state, parts=entry.parts, part_receipts=entry.part_receipts,
                attempts=entry.attempts, error=error, text=entry.text if with_text else None,
            ))
    return tuple(rows)


# -- blocked numbers -----------------------------------------------------------------------


class BlockFormError(ValueError):
    """What the block form holds is not a number (or its reason is unusable)."""


@dataclass(frozen=True, slots=True)
class BlockForm:
    msisdn: str
    reason: str | None


def parse_block_form(number: str, reason: str) -> BlockForm:
    """The block form: a number in any international form, and an optional one-line reason
    (the same rules as PUT /v1/blocked-numbers)."""
    msisdn = parse_number(number)
    try:
        given = parse_block_request({"reason": reason.strip()}) if reason.strip() else None
    except RequestError as exc:
        raise BlockFormError(f"the reason {exc.problem}") from None
    return BlockForm(msisdn, given)


def parse_number(raw: str) -> str:
    """A person's number typed into a console form, as a msisdn."""
    text = raw.strip()
    if not text or len(text) > 32:
        raise BlockFormError("enter a phone number in international form (+…)")
    try:
        return to_msisdn(text)
    except InvalidNumber as exc:
        raise BlockFormError(f"not a phone number: {exc}") from None


@dataclass(frozen=True, slots=True)
class BlockedRow:
    """One blocked number as the page lists it: masked, with what tells it apart."""

    handle: str
    number: str  # masked
    country: str | None
    reason: str | None
    blocked_at: float


class Handles:
    """Opaque handles for the blocked numbers a sign-in was shown, so that the page's unblock
    forms and its next-page link carry no number: each is resolved through a hash kept with the
    sign-in (and expiring with it). A handle is an HMAC of the sign-in and the number under the
    console's key: the same on every reload (the hash does not grow with reloads), worthless to
    another sign-in, and telling nothing of the number without the key."""

    def __init__(self, client: redis.Redis, secret: str, keys: Keys | None = None) -> None:
        self._redis = client
        self._secret = secret.encode()
        self._keys = keys or Keys()

    def handle(self, session_id: str, msisdn: str) -> str:
        # the key also signs the session cookie: a prefix keeps the two uses of it apart
        message = f"blocked-number-handle:{session_id}:{msisdn}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256)
        return digest.hexdigest()[:32]

    def remember(
        self, session: ConsoleSession, msisdns: Sequence[str], now: float
    ) -> dict[str, str]:
        """Each number's handle (msisdn -> handle), resolvable by this sign-in until it ends."""
        handles = {m: self.handle(session.id, m) for m in msisdns}
        if handles:
            key = self._keys.console_handles(session.id)
            pipe = self._redis.pipeline()
            pipe.hset(key, mapping={h: m for m, h in handles.items()})
            pipe.expire(key, max(1, math.ceil(session.expires_at - now)))
            pipe.execute()
        return handles

    def resolve(self, session_id: str, handle: str) -> str | None:
        """The number this sign-in was shown under `handle`, or None."""
        if not re.fullmatch(r"[0-9a-f]{32}", handle):
            return None
        found = self._redis.hget(self._keys.console_handles(session_id), handle)
        return str(found) if found else None

    def forget(self, session_id: str) -> None:
        self._redis.delete(self._keys.console_handles(session_id))


def blocked_rows(
    entries: Sequence[BlockedNumber], handles: Mapping[str, str]
) -> tuple[BlockedRow, ...]:
    return tuple(
        BlockedRow(handle=handles[e.msisdn], number=masked(e.msisdn),
                   country=country_of(e.msisdn), reason=e.reason, blocked_at=e.blocked_at)
        for e in entries
    )
