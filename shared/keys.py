"""Every Redis key the proxy writes, in one place, under one prefix."""

from __future__ import annotations

from dataclasses import dataclass

# How long what names or quotes a person outlives its use (SMSPROXY_RETENTION_SECONDS): finished
# conversations, message records and trails, and every index keyed by a number.
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600

# The prefix of a listing field in a person's routes hash (LISTED + conversation id); a route's
# field is a virtual number, all digits, so the two never meet.
LISTED = "c:"
# The field of a person's routes hash that caches their number's Number Insight answer.
INSIGHT = "ni"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names; the prefix lets several deployments (or test runs) share one Redis."""

    prefix: str = "smsproxy:"

    def conversation(self, conversation_id: str) -> str:
        return f"{self.prefix}conv:{conversation_id}"

    def conversation_log(self, conversation_id: str) -> str:
        return f"{self.prefix}conv:{conversation_id}:log"

    def conversations(self) -> str:
        """Sorted set of conversations that belong to no client (created before clients had
        names), by creation time."""
        return f"{self.prefix}convs"

    def client_conversations(self, client: str) -> str:
        """Sorted set of one client's conversations by creation time (its listing)."""
        return f"{self.prefix}client:{client}:convs"

    def client_live(self, client: str) -> str:
        """Set of one client's live conversations, for its cap, as counted before the count
        (client_live_count): those still in it are counted from it until they end."""
        return f"{self.prefix}client:{client}:live"

    def client_live_count(self, client: str) -> str:
        """How many live conversations one client holds (for its cap), apart from those its
        live set still counts; a count, not a set: a member per live conversation cost about 70
        bytes (docs/performance.md, section 4)."""
        return f"{self.prefix}client:{client}:live-count"

    def person_conversations(self, real_number: str) -> str:
        """Sorted set of a person's conversations by creation time, as listed before the
        listing moved into the routes hash: read and pruned until it expires."""
        return f"{self.prefix}person:{real_number}:convs"

    def expiry(self) -> str:
        """Sorted set of active conversations by when they expire."""
        return f"{self.prefix}expiry"

    def pending_conversations(self) -> str:
        """Sorted set of pending conversations by when they were created."""
        return f"{self.prefix}pending:convs"

    def routes(self, real_number: str) -> str:
        """Hash of one person: virtual number -> conversation id for their live conversations,
        LISTED + conversation id -> its creation time for every conversation listing them
        (the person's listing, shared/conversation_store.py), and INSIGHT -> their number's
        cached Number Insight answer (shared/insight_cache.py)."""
        return f"{self.prefix}routes:{real_number}"

    def pair(self, first: str, second: str) -> str:
        """The proxies two people last used with each other (order-independent)."""
        low, high = sorted((first, second))
        return f"{self.prefix}pair:{low}:{high}"

    def opt_out(self, real_number: str, virtual_number: str) -> str:
        """Hash of a person's opt-out state on one virtual number (STOP / START). An opt-out
        has no TTL: it lasts until the person opts back in (erasure must include it)."""
        return f"{self.prefix}optout:{real_number}:{virtual_number}"

    def pool(self, country: str) -> str:
        """Sorted set of allocatable numbers of a country, scored by live routes."""
        return f"{self.prefix}pool:{country}"

    def pool_members(self) -> str:
        """Every number the pool manages, allocatable or draining."""
        return f"{self.prefix}pool:numbers"

    def pool_countries(self) -> str:
        return f"{self.prefix}pool:countries"

    def number(self, msisdn: str) -> str:
        return f"{self.prefix}number:{msisdn}"

    def insight(self, msisdn: str) -> str:
        """A number's cached Number Insight country, as kept before the answer moved into the
        routes hash (INSIGHT): only deleted (erasure), it expires within the cache's life."""
        return f"{self.prefix}ni:{msisdn}"

    def insight_attempts(self, conversation_id: str) -> str:
        """Hash of participant index -> failed Number Insight lookups, for one create."""
        return f"{self.prefix}ni:tries:{conversation_id}"

    def idempotency(self, client: str, key: str) -> str:
        """One client's Idempotency-Key: keys of different clients never meet."""
        return f"{self.prefix}idem:{client}:{key}"

    def dedupe(self, kind: str, message_id: str) -> str:
        return f"{self.prefix}seen:{kind}:{message_id}"

    def outbound(self, outbound_id: str) -> str:
        return f"{self.prefix}out:{outbound_id}"

    def outbound_text(self, outbound_id: str) -> str:
        """A send's body, apart from its record: a long value would make Redis store the whole
        record as a hash table (several times the size) for the rest of its life."""
        return f"{self.prefix}out:{outbound_id}:text"

    def inbound(self, message_id: str) -> str:
        return f"{self.prefix}in:{message_id}"

    def concat_parts(self, group: str) -> str:
        """Hash of part number -> text for one multi-part message being reassembled."""
        return f"{self.prefix}concat:{group}"

    def concat_finished(self, group: str) -> str:
        """A finished multi-part group's tombstone: its parts' messageIds, for a while."""
        return f"{self.prefix}concat:{group}:done"

    def send_claim(self, outbound_id: str) -> str:
        return f"{self.prefix}claim:{outbound_id}"

    def pending_jobs(self) -> str:
        """Hash of webhook job -> its queue and broker message, until a worker has handled it."""
        return f"{self.prefix}pending:jobs"

    def pending_due(self) -> str:
        """Sorted set of webhook jobs by when to re-publish them if still unhandled."""
        return f"{self.prefix}pending:due"

    def outbound_open(self) -> str:
        """Sorted set of sends owed and not finished, by when they were owed."""
        return f"{self.prefix}out:open"

    def rate_bucket(self, name: str) -> str:
        """The shared send-rate token bucket of one API key."""
        return f"{self.prefix}rate:{name}"

    def blocked_numbers(self) -> str:
        """Sorted set of blocked msisdns (all scored 0: listed in number order)."""
        return f"{self.prefix}blocked:numbers"

    def blocked_number(self, msisdn: str) -> str:
        """Hash of one blocked number's reason and when it was blocked."""
        return f"{self.prefix}blocked:{msisdn}"

    def cap_verdict(self, message_id: str) -> str:
        """An inbound message's verdict against its conversation's caps."""
        return f"{self.prefix}cap:{message_id}"

    def conversation_daily_relays(self, conversation_id: str) -> str:
        """Relays of one conversation in its current 24 h window."""
        return f"{self.prefix}conv:{conversation_id}:relays"

    def daily_sends(self, day: str) -> str:
        """Sends the account made on one UTC day (YYYYMMDD)."""
        return f"{self.prefix}sends:{day}"

    def allowance(self, name: str) -> str:
        """Who used a window's one allowance (an out-of-session reply to a sender, ...)."""
        return f"{self.prefix}allow:{name}"

    def outbound_in_doubt(self) -> str:
        """Sorted set of sends whose outcome is unknown (a held lease met), by when first met."""
        return f"{self.prefix}out:doubt"

    def worker_heartbeats(self) -> str:
        """Sorted set of worker name -> its last heartbeat (Unix time)."""
        return f"{self.prefix}workers"

    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    def console_session(self, session_id: str) -> str:
        """Hash of one console sign-in: its client, when, its CSRF token (expires with it)."""
        return f"{self.prefix}console:session:{session_id}"

    def console_handles(self, session_id: str) -> str:
        """Hash of the handles one console sign-in was shown for blocked numbers (handle ->
        msisdn), so that its forms and links never carry a number; expires with the sign-in."""
        return f"{self.prefix}console:handles:{session_id}"

    def console_audit(self) -> str:
        """Stream of console actions (who, what, when), capped and trimmed by age."""
        return f"{self.prefix}console:audit"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"
