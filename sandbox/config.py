"""The sandbox's settings and the number-range syntax used for its inventory."""

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.phones import is_msisdn, lookup
from sandbox.signing import METHODS

WEBHOOK_FORMATS: tuple[str, ...] = ("form", "get", "json")

DEFAULT_INVENTORY = (
    "GB:447700900100-447700900119,US:12015550100-12015550109,DE:4915123456700-4915123456709"
)

# Monthly rental, as Vonage quotes it (a string, in euros).
_COSTS = {"GB": "1.25", "US": "0.90", "DE": "2.50"}
_NUMBER_TYPES = {"mobile": "mobile-lvn", "landline": "landline", "toll-free": "landline-toll-free"}


@dataclass(frozen=True)
class NumberSpec:
    """A virtual number as the Numbers API lists it."""

    country: str
    msisdn: str
    type: str = "mobile-lvn"
    cost: str = "1.00"
    features: tuple[str, ...] = ("VOICE", "SMS")


@dataclass(frozen=True)
class SandboxAccount:
    """One Vonage account: its key, secret and the secret its webhooks are signed with."""

    api_key: str
    api_secret: str = field(repr=False)
    signature_secret: str | None = field(default=None, repr=False)


def parse_accounts(spec: str) -> list[SandboxAccount]:
    """Parse `key:secret[:signature_secret],...` (an empty signature secret: unsigned)."""
    accounts: list[SandboxAccount] = []
    for position, item in enumerate(filter(None, (c.strip() for c in spec.split(","))), 1):
        key, sep, rest = item.partition(":")
        secret, _, signature_secret = rest.partition(":")
        if not key or not sep or not secret:
            # the position, never the entry: it holds a secret
            raise ValueError(f"bad account {position}: want KEY:SECRET[:SIGNATURE_SECRET]")
        accounts.append(SandboxAccount(key, secret, signature_secret or None))
    return accounts


@dataclass(frozen=True)
class SandboxConfig:
    """Everything `python -m sandbox serve` is told; the defaults are the CLI's."""

    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path = Path(".sandbox")
    ready_file: Path | None = None
    api_key: str = "sandbox-key"
    api_secret: str = "sandbox-secret"  # noqa: S105 - a fixed local credential, by design
    signature_secret: str | None = None
    # Accounts besides the one above (which the numbers owned at start belong to).
    extra_accounts: tuple[SandboxAccount, ...] = ()
    # Vonage's SMS limit: requests per second per API key, beyond which a send answers status
    # 1 "Throttled" (30 by default at Vonage); 0 turns the limit off.
    rate_per_key: float = 0.0
    signature_method: str = "md5hash"
    webhook_format: str = "form"
    dlr_url: str | None = None
    inventory: tuple[NumberSpec, ...] = field(
        default_factory=lambda: tuple(parse_numbers(DEFAULT_INVENTORY))
    )
    owned: tuple[NumberSpec, ...] = ()
    latency_ms: int = 0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    seed: int | None = None
    retry_base_seconds: float = 1.0
    retry_max_attempts: int = 10
    strict_sender: bool = True
    # The handsets page (sandbox/handsets.py): off unless a port is given, loopback unless told.
    handsets_port: int | None = None
    handsets_host: str = "127.0.0.1"
    handsets_allow_remote: bool = False
    phones: tuple[str, ...] = ()
    # Where the page starts conversations: the proxy's public REST API and a bearer token for it.
    proxy_api_url: str | None = None
    proxy_api_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.signature_method not in METHODS:
            raise ValueError(f"signature method must be one of {', '.join(METHODS)}")
        if self.webhook_format not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook format must be one of {', '.join(WEBHOOK_FORMATS)}")
        for name in ("throttle_rate", "error_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.handsets_port is not None and not (
            self.handsets_allow_remote or is_loopback(self.handsets_host)
        ):
            raise ValueError(
                f"the handsets page binds to loopback only, not {self.handsets_host!r}"
                " (--handsets-allow-remote to serve it to other machines)"
            )
        bad_phones = [p for p in self.phones if not is_msisdn(p)]
        if bad_phones:
            raise ValueError(f"phones must be digits, no +: {', '.join(bad_phones)}")
        keys = [account.api_key for account in self.accounts]
        if len(set(keys)) != len(keys):
            raise ValueError("every account needs its own API key")
        if self.rate_per_key < 0:
            raise ValueError("rate per key must be >= 0")
        if self.retry_max_attempts < 1 or self.retry_base_seconds < 0 or self.latency_ms < 0:
            raise ValueError("retry attempts must be >= 1, retry base and latency >= 0")


    @property
    def accounts(self) -> tuple[SandboxAccount, ...]:
        """Every account, the primary (`api_key`) first."""
        primary = SandboxAccount(self.api_key, self.api_secret, self.signature_secret)
        return (primary, *self.extra_accounts)

    def account(self, api_key: str) -> SandboxAccount | None:
        """The account with this key, or None."""
        return next((a for a in self.accounts if a.api_key == api_key), None)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def parse_numbers(spec: str) -> list[NumberSpec]:
    """Parse `GB:447700900100-447700900119,US:12015550100` into numbers (ranges are inclusive)."""
    numbers: list[NumberSpec] = []
    for item in filter(None, (chunk.strip() for chunk in spec.split(","))):
        country, sep, span = item.partition(":")
        first, _, last = span.partition("-")
        last = last or first
        if not sep or len(country) != 2 or not (is_msisdn(first) and is_msisdn(last)):
            raise ValueError(f"bad number range {item!r}: want CC:FIRST[-LAST]")
        if int(last) < int(first) or int(last) - int(first) > 10_000:
            raise ValueError(f"bad number range {item!r}: empty or over 10000 numbers")
        numbers.extend(number_spec(country, str(n)) for n in range(int(first), int(last) + 1))
    return numbers


def number_spec(
    country: str, msisdn: str, number_type: str | None = None, cost: str | None = None
) -> NumberSpec:
    """A number with its type guessed from the numbering plan when not given."""
    country = country.upper()
    if number_type is None:
        info = lookup(msisdn)
        number_type = _NUMBER_TYPES[info.line_type] if info else "mobile-lvn"
    return NumberSpec(country, msisdn, number_type, cost or _COSTS.get(country, "1.00"))
