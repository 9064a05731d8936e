"""The Vonage accounts the proxy sends through: one from VONAGE_API_KEY/SECRET, or several.

Vonage limits sends per API key (30 per second by default, VONAGE.md), so a deployment that
needs more spreads its numbers over several accounts: each number sends from the account that
bought it, under that account's own rate bucket. Secrets never appear in a repr or an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# What an API key may look like: Vonage's are 8 hex digits; anything visible without the
# separators of the setting's syntax is accepted, so that a sandbox's names fit too.
_SEPARATORS = frozenset(":,#")


@dataclass(frozen=True, slots=True)
class VonageAccount:
    """One account: its API key (public: every webhook names it), secret and signature secret."""

    api_key: str
    api_secret: str = field(repr=False)
    signature_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class VonageAccounts:
    """The accounts in the order the operator listed them; the first is the primary one (Number
    Insight lookups, and numbers the inventory has no account for)."""

    accounts: tuple[VonageAccount, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> VonageAccounts:
        """`key:secret:signature_secret,key2:...` (the signature secret may be left empty), or
        `@/path/to/file` holding such entries, one per line or comma-separated, `#` comments."""
        text = raw.strip()
        if text.startswith("@"):
            path = Path(text[1:].strip())
            try:
                content = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}")\
                    from None
            lines = (line.split("#", 1)[0] for line in content.splitlines())
            text = ",".join(lines)
        found: list[VonageAccount] = []
        for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
            if not entry:
                continue
            found.append(_account(entry, position))
        keys = [account.api_key for account in found]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"API key {duplicates[0]!r} is listed twice")
        return cls(tuple(found))

    @classmethod
    def single(
        cls, api_key: str | None, api_secret: str | None, signature_secret: str | None
    ) -> VonageAccounts:
        """The one account of VONAGE_API_KEY/SECRET/SIGNATURE_SECRET (none without a key)."""
        if not api_key or not api_secret:
            return cls()
        return cls((VonageAccount(api_key, api_secret, signature_secret),))

    def __iter__(self) -> Iterator[VonageAccount]:
        return iter(self.accounts)

    def __len__(self) -> int:
        return len(self.accounts)

    def __bool__(self) -> bool:
        return bool(self.accounts)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(account.api_key for account in self.accounts)

    @property
    def primary(self) -> VonageAccount | None:
        return self.accounts[0] if self.accounts else None

    def get(self, api_key: str) -> VonageAccount | None:
        """The account with this API key, or None."""
        for account in self.accounts:
            if account.api_key == api_key:
                return account
        return None


def _account(entry: str, position: int) -> VonageAccount:
    """One `key:secret[:signature_secret]` entry; errors name its position and key only."""
    key, sep, rest = entry.partition(":")
    key = key.strip()
    if not key or not sep or not key.isascii() or not key.isprintable() or " " in key \
            or _SEPARATORS & set(key):
        raise ValueError(f"entry {position}: expected api_key:api_secret[:signature_secret]")
    secret, _, signature_secret = rest.partition(":")
    secret, signature_secret = secret.strip(), signature_secret.strip()
    if not secret:
        raise ValueError(f"entry {position} ({key}): the API secret is missing")
    return VonageAccount(key, secret, signature_secret or None)
