"""All of the sandbox's mutable state, behind one lock (the server is multi-threaded)."""

import itertools
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sandbox.config import NumberSpec, SandboxConfig

START_BALANCE = Decimal("1000")

T = TypeVar("T")


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds, as records carry it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class OwnedNumber:
    """A number the account rents, with its inbound-SMS URL."""

    spec: NumberSpec
    mo_http_url: str = ""
    account: str = ""  # the API key of the account renting it

    def to_api(self) -> dict[str, Any]:
        """The Numbers API's shape: `moHttpUrl` only when one is set, as Vonage does."""
        entry: dict[str, Any] = {
            "country": self.spec.country,
            "msisdn": self.spec.msisdn,
            "type": self.spec.type,
            "features": list(self.spec.features),
        }
        if self.mo_http_url:
            entry["moHttpUrl"] = self.mo_http_url
        return entry


def available_to_api(spec: NumberSpec) -> dict[str, Any]:
    """A number in the search results: the Numbers API's shape, `cost` a string."""
    return {
        "country": spec.country,
        "msisdn": spec.msisdn,
        "type": spec.type,
        "cost": spec.cost,
        "features": list(spec.features),
    }


@dataclass(frozen=True)
class SentMessage:
    """A send that /sms/json accepted, whole, with the ids of its parts."""

    from_: str
    to: str
    text: str
    type: str
    client_ref: str | None
    callback: str | None
    message_ids: tuple[str, ...]
    parts: tuple[str, ...]
    sent_at: str
    account: str = ""  # the API key it was sent with

    def to_json(self) -> dict[str, Any]:
        """The control API's shape."""
        return {
            "account": self.account,
            "from": self.from_,
            "to": self.to,
            "text": self.text,
            "type": self.type,
            "client_ref": self.client_ref,
            "callback": self.callback,
            "message_ids": list(self.message_ids),
            "parts": list(self.parts),
            "sent_at": self.sent_at,
        }


@dataclass(frozen=True)
class HandsetText:
    """A text a simulated handset sent to a virtual number, whole (its webhooks carry the parts)."""

    from_: str
    to: str
    text: str
    sent_at: str


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt at delivering a webhook."""

    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass
class Webhook:
    """One webhook Vonage would send (a retry is another attempt, a duplicate another webhook)."""

    id: int
    kind: str  # "inbound" or "receipt"
    url: str | None
    format: str
    params: dict[str, str]
    message_id: str
    copy: int = 1
    status: str = "pending"  # pending, delivered, failed or undeliverable
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The control API's shape."""
        return asdict(self)


@dataclass
class Faults:
    """Injected failures; `sms_script` forces the outcome of the next sends, one per send."""

    latency_ms: int = 0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    sms_script: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The control API's shape."""
        return asdict(self)


def check_script_entry(entry: object) -> str:
    """An SMS status code ("0".."99") or "httpNNN"; raise ValueError otherwise."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = str(entry)
    if isinstance(entry, str):
        code = entry.removeprefix("http")
        low, high = (100, 599) if entry.startswith("http") else (0, 99)
        if code.isdigit() and code.isascii() and low <= int(code) <= high:
            return entry
    raise ValueError(f"bad sms_script entry {entry!r}: want a status like '1' or 'http500'")


class State:
    """Numbers, sends, webhooks and faults; every method takes the lock and returns copies."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        # Not for security: a seeded generator makes fault injection and shuffling repeatable.
        self._rng = random.Random(config.seed)  # noqa: S311
        # Webhook ids are never reused, so a retry scheduled before a reset finds nothing.
        self._webhook_ids = itertools.count(1)
        self._inventory: dict[str, NumberSpec] = {}
        self._owned: dict[str, OwnedNumber] = {}
        self._sent: list[SentMessage] = []
        self._webhooks: dict[int, Webhook] = {}
        self._handset_texts: list[HandsetText] = []
        # Phones the handsets page shows beyond those seen in traffic (added there or configured).
        self._phones: list[str] = []
        # Bumped on every change a handset would show, so the page's poll can ask "anything new?"
        self._version = 0
        self._faults = Faults()
        self._balance = START_BALANCE
        self._rejected = 0
        # Number Insight requests judged (any status; an injected 5xx never gets that far): what
        # the proxy's cache should spare.
        self._insight_lookups = 0
        # Per API key: the token bucket of its send rate (tokens, when), and its throttled sends.
        self._buckets: dict[str, tuple[float, float]] = {}
        self._throttled: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the configured start: records and faults cleared, numbers restored."""
        config = self._config
        with self._lock:
            self._owned = {n.msisdn: OwnedNumber(n, account=config.api_key) for n in config.owned}
            self._inventory = {n.msisdn: n for n in config.inventory if n.msisdn not in self._owned}
            self._sent = []
            self._webhooks = {}
            self._handset_texts = []
            self._phones = list(config.phones)
            self._version += 1
            self._faults = Faults(config.latency_ms, config.throttle_rate, config.error_rate)
            self._balance = START_BALANCE
            self._rejected = 0
            self._insight_lookups = 0
            self._buckets = {}
            self._throttled = {}

    # Numbers

    def owns(self, msisdn: str, account: str | None = None) -> bool:
        """True if an account (or this one) rents `msisdn`."""
        with self._lock:
            number = self._owned.get(msisdn)
            return number is not None and account in (None, number.account)

    def owned(self, account: str | None = None) -> list[OwnedNumber]:
        """Owned numbers in msisdn order: every account's, or one account's."""
        with self._lock:
            return [replace(self._owned[k]) for k in sorted(self._owned)
                    if account in (None, self._owned[k].account)]

    def owned_number(self, msisdn: str) -> OwnedNumber | None:
        """One owned number, or None."""
        with self._lock:
            number = self._owned.get(msisdn)
            return replace(number) if number else None

    def available(self) -> list[NumberSpec]:
        """Numbers that can be bought, in msisdn order."""
        with self._lock:
            return [self._inventory[k] for k in sorted(self._inventory)]

    def buy(self, country: str, msisdn: str, account: str | None = None) -> bool:
        """Move a number from the inventory to an account; False if it is not for sale there."""
        with self._lock:
            spec = self._inventory.get(msisdn)
            if spec is None or spec.country != country:
                return False
            del self._inventory[msisdn]
            self._owned[msisdn] = OwnedNumber(spec, account=account or self._config.api_key)
            return True

    def cancel(self, country: str, msisdn: str, account: str | None = None) -> bool:
        """Give an owned number back to the inventory; False if the account does not own it."""
        with self._lock:
            number = self._owned.get(msisdn)
            if number is None or number.spec.country != country or account not in (
                None, number.account
            ):
                return False
            del self._owned[msisdn]
            self._inventory[msisdn] = number.spec
            return True

    def update(
        self, country: str, msisdn: str, mo_http_url: str | None, account: str | None = None
    ) -> bool:
        """Set an owned number's inbound URL (None leaves it, "" clears it); False if not owned
        (by this account)."""
        with self._lock:
            number = self._owned.get(msisdn)
            if number is None or number.spec.country != country or account not in (
                None, number.account
            ):
                return False
            if mo_http_url is not None:
                number.mo_http_url = mo_http_url
            return True

    def add_inventory(self, specs: list[NumberSpec]) -> None:
        """Make numbers buyable (numbers already owned are left alone)."""
        with self._lock:
            for spec in specs:
                if spec.msisdn not in self._owned:
                    self._inventory[spec.msisdn] = spec

    def add_owned(
        self, specs: list[NumberSpec], mo_http_urls: list[str], accounts: list[str] | None = None
    ) -> None:
        """Make an account (the primary by default) own numbers directly, as if bought
        outside the proxy."""
        with self._lock:
            owners = accounts or [""] * len(specs)
            for spec, url, owner in zip(specs, mo_http_urls, owners, strict=True):
                self._inventory.pop(spec.msisdn, None)
                self._owned[spec.msisdn] = OwnedNumber(spec, url, owner or self._config.api_key)

    # SMS

    def record_sent(self, message: SentMessage, price: Decimal) -> Decimal:
        """Record an accepted send and charge it; returns the remaining balance."""
        with self._lock:
            self._sent.append(message)
            self._balance -= price
            self._version += 1
            return self._balance

    def record_rejected(self) -> None:
        """Count a send refused with a non-zero status."""
        with self._lock:
            self._rejected += 1

    def record_insight_lookup(self) -> None:
        """Count one Number Insight request judged."""
        with self._lock:
            self._insight_lookups += 1

    def take_send_slot(self, api_key: str, rate: float) -> bool:
        """Whether a send with this key is within its rate (a token bucket holding one
        second's worth, as Vonage's "30 requests per second" reads); False: throttled."""
        if rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            capacity = max(1.0, rate)
            tokens, at = self._buckets.get(api_key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens < 1:
                self._buckets[api_key] = (tokens, now)
                self._throttled[api_key] = self._throttled.get(api_key, 0) + 1
                return False
            self._buckets[api_key] = (tokens - 1, now)
            return True

    def sent(self, to: str | None = None) -> list[SentMessage]:
        """Accepted sends in order, all or those to one handset."""
        with self._lock:
            return [m for m in self._sent if to is None or m.to == to]

    # Handsets

    def record_handset_text(self, text: HandsetText) -> None:
        """Remember a text a handset sent, for its phone's timeline."""
        with self._lock:
            self._handset_texts.append(text)
            self._version += 1

    def handset_texts(self, handset: str) -> list[HandsetText]:
        """Texts `handset` sent, oldest first."""
        with self._lock:
            return [t for t in self._handset_texts if t.from_ == handset]

    def add_phone(self, msisdn: str) -> None:
        """Show a phone on the handsets page (a no-op if it is already there)."""
        with self._lock:
            if msisdn not in self._phones:
                self._phones.append(msisdn)
                self._version += 1

    def phones(self) -> list[str]:
        """Every simulated phone: added or configured first, then any seen texting or texted."""
        with self._lock:
            seen = [t.from_ for t in self._handset_texts]
            # A send to an owned number is the proxy texting itself, not a phone.
            seen += [m.to for m in self._sent if m.to not in self._owned]
            return list(dict.fromkeys([*self._phones, *seen]))

    def version(self) -> int:
        """A counter that changes whenever a phone's view may have changed."""
        with self._lock:
            return self._version

    @staticmethod
    def new_message_id() -> str:
        """A Vonage-looking message id, random so that ids stay unique across restarts."""
        return secrets.token_hex(9).upper()

    # Faults

    def faults(self) -> Faults:
        """A copy of the current faults."""
        with self._lock:
            return replace(self._faults, sms_script=list(self._faults.sms_script))

    def update_faults(self, changes: dict[str, Any]) -> Faults:
        """Apply a partial update; raise ValueError (and change nothing) on a bad value."""
        with self._lock:
            faults = replace(self._faults, sms_script=list(self._faults.sms_script))
            reseed: int | None = None
            for key, value in changes.items():
                if key == "seed":
                    # A test that injects random faults restarts the generator, so that what
                    # it meets does not depend on what earlier tests drew from it.
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise ValueError("seed must be a whole number")
                    reseed = value
                elif key == "latency_ms":
                    if not _is_number(value) or value < 0:
                        raise ValueError("latency_ms must be a number >= 0")
                    faults.latency_ms = int(value)
                elif key in ("throttle_rate", "error_rate"):
                    if not _is_number(value) or not 0 <= value <= 1:
                        raise ValueError(f"{key} must be a number between 0 and 1")
                    setattr(faults, key, float(value))
                elif key == "sms_script":
                    if not isinstance(value, list):
                        raise ValueError("sms_script must be a list")
                    faults.sms_script = [check_script_entry(entry) for entry in value]
                else:
                    raise ValueError(f"unknown fault {key!r}")
            self._faults = faults
            if reseed is not None:
                self._rng = random.Random(reseed)  # noqa: S311
            return replace(faults, sms_script=list(faults.sms_script))

    def next_scripted_outcome(self) -> str | None:
        """Pop the forced outcome for this send, if the script has one."""
        with self._lock:
            return self._faults.sms_script.pop(0) if self._faults.sms_script else None

    def chance(self, rate: float) -> bool:
        """True with probability `rate`, from the seeded generator."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def shuffled(self, items: list[T]) -> list[T]:
        """`items` in a different order (when there are at least two)."""
        with self._lock:
            out = list(items)
            self._rng.shuffle(out)
        # A shuffle may land on the original order; a test asking for disorder must get it.
        return out if out != items else out[::-1]

    # Webhooks

    def add_webhook(
        self,
        kind: str,
        url: str | None,
        params: dict[str, str],
        message_id: str,
        copy: int = 1,
    ) -> int:
        """Record a webhook to deliver (undeliverable at once when there is no URL)."""
        with self._lock:
            webhook_id = next(self._webhook_ids)
            self._webhooks[webhook_id] = Webhook(
                id=webhook_id,
                kind=kind,
                url=url,
                format=self._config.webhook_format,
                params=dict(params),
                message_id=message_id,
                copy=copy,
                status="pending" if url else "undeliverable",
            )
            return webhook_id

    def webhook(self, webhook_id: int) -> Webhook | None:
        """A copy of one webhook, or None once a reset dropped it."""
        with self._lock:
            found = self._webhooks.get(webhook_id)
            if found is None:
                return None
            return replace(found, params=dict(found.params), attempts=list(found.attempts))

    def record_attempt(self, webhook_id: int, attempt: Attempt, status: str) -> None:
        """Append an attempt and set the webhook's status (a no-op after a reset)."""
        with self._lock:
            found = self._webhooks.get(webhook_id)
            if found is not None:
                found.attempts.append(attempt)
                found.status = status

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook in creation order, with its attempts."""
        with self._lock:
            return [self._webhooks[k].to_json() for k in sorted(self._webhooks)]

    def stats(self) -> dict[str, Any]:
        """Counts for a quick look at what happened."""
        with self._lock:
            by_status = {"pending": 0, "delivered": 0, "failed": 0, "undeliverable": 0}
            for webhook in self._webhooks.values():
                by_status[webhook.status] += 1
            return {
                "sms_sent": len(self._sent),
                "sms_parts": sum(len(m.message_ids) for m in self._sent),
                "sms_rejected": self._rejected,
                "insight_lookups": self._insight_lookups,
                "webhooks": by_status,
                "webhook_attempts": sum(len(w.attempts) for w in self._webhooks.values()),
                "owned_numbers": len(self._owned),
                "accounts": {
                    account.api_key: {
                        "sms_sent": sum(1 for m in self._sent if m.account == account.api_key),
                        "sms_throttled": self._throttled.get(account.api_key, 0),
                        "owned_numbers": sum(
                            1 for n in self._owned.values() if n.account == account.api_key
                        ),
                    }
                    for account in self._config.accounts
                },
                "available_numbers": len(self._inventory),
                "balance": f"{self._balance:.8f}",
            }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
