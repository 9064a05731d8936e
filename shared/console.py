"""The operations console's logic: sign-ins, the audit of actions, and what each page shows.

web/console.py renders these; nothing here knows Flask. What a page shows of a person is what
/v1 already shows that client, with every participant's real number masked (last four digits):
a support agent finds a conversation by a number, but the screen never shows it whole.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from shared.api_models import CONVERSATION_ID_PATTERN
from shared.clients import ApiClient, ApiClients
from shared.domain import ERASED, Conversation
from shared.jobs import Queue
from shared.keys import DEFAULT_RETENTION_SECONDS, Keys
from shared.messages import TrailEntry
from shared.metrics import SENDS, WEBHOOKS, Counters, parse_series
from shared.phone import InvalidNumber, mask, to_e164, to_msisdn
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
class Overview:
    webhooks: tuple[tuple[str, int], ...]
    relays: tuple[tuple[str, int], ...]
    sends: tuple[tuple[str, int], ...]
    conversations: tuple[tuple[str, int], ...]
    failures: tuple[tuple[str, int], ...]
    queues: tuple[tuple[str, int], ...] | None
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


def queue_depths(client: redis.Redis) -> tuple[tuple[str, int], ...]:
    """Jobs waiting on each queue, when the broker is this Redis (kombu keeps a queue as a list
    named after it, priority 0 being the only priority the proxy uses)."""
    pipe = client.pipeline()
    for queue in Queue:
        pipe.llen(queue.value)
    return tuple(zip((q.value for q in Queue), (int(n) for n in pipe.execute()), strict=True))


def overview(
    counts: Mapping[str, float],
    queues: tuple[tuple[str, int], ...] | None,
    pool: tuple[CountryPool, ...],
) -> Overview:
    return Overview(
        webhooks=_group(counts, WEBHOOKS),
        relays=_group(counts, "smsproxy_inbound_relayed_total", "smsproxy_inbound_dropped_total"),
        sends=_group(counts, SENDS),
        conversations=_group(counts, "smsproxy_conversations_total"),
        failures=tuple((label, int(counts.get(name, 0))) for name, label in FAILURES),
        queues=queues,
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
    if _CONVERSATION_ID.fullmatch(text.lower()):
        return Search(conversation_id=text.lower())
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


def participants(conversation: Conversation) -> tuple[ParticipantRow, ...]:
    return tuple(
        ParticipantRow(
            number=masked(p.number),
            proxy_number=to_e164(p.proxy_number) if p.proxy_number else None,
            display_name=p.display_name, country=p.country,
        )
        for p in conversation.participants
    )


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
                text=entry.text if with_text else None,
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
