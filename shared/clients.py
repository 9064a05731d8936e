"""The marketplace clients of /v1: who holds which bearer token.

`SMSPROXY_API_TOKENS` lists `name:token` entries (a bare `token` is a client of its own, named
after a digest of the token). A client's name scopes what it owns: its conversations, its
Idempotency-Keys, its rate limit and its cap on live conversations. Only digests of the tokens
are kept, so that a settings dump or a traceback never shows one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

# 32 characters of a random alphabet are far beyond guessing at any request rate we allow.
MIN_TOKEN_LENGTH = 32
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_PATTERN)
# Visible ASCII without the separators of the setting itself.
_TOKEN = re.compile(r"[!-~]+")


@dataclass(frozen=True, slots=True)
class ApiClient:
    """One marketplace client: its name and the SHA-256 of its token."""

    name: str
    token_digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class ApiClients:
    """Every client; `identify` finds the one a presented token belongs to."""

    clients: tuple[ApiClient, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> ApiClients:
        """Parse `name:token,other:token2,baretoken`; ValueError names the bad entry (never
        its token)."""
        clients: list[ApiClient] = []
        names: set[str] = set()
        digests: set[bytes] = set()
        for position, item in enumerate((i.strip() for i in raw.split(",")), start=1):
            if not item:
                continue
            name, sep, token = item.partition(":")
            if not sep:
                token = name
                name = "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
            elif not _NAME.fullmatch(name):
                raise ValueError(
                    f"entry {position}: client name must match {NAME_PATTERN} "
                    "(letters, digits, '_', '.', '-')"
                )
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"entry {position} ({name}): token must be at least {MIN_TOKEN_LENGTH} "
                    "characters (make one with `python3 -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`)"
                )
            if not _TOKEN.fullmatch(token):
                raise ValueError(f"entry {position} ({name}): token must be visible ASCII")
            digest = _digest(token)
            if name in names:
                raise ValueError(f"entry {position}: client name {name} is listed twice")
            if digest in digests:
                raise ValueError(f"entry {position} ({name}): the same token is listed twice")
            names.add(name)
            digests.add(digest)
            clients.append(ApiClient(name, digest))
        return cls(tuple(clients))

    def identify(self, presented: str) -> ApiClient | None:
        """The client whose token this is, or None.

        The presented token is hashed once and compared with every client's digest: the time
        taken depends neither on how much of a guess was right nor on which client matched.
        """
        digest = _digest(presented)
        found: ApiClient | None = None
        for client in self.clients:
            if hmac.compare_digest(digest, client.token_digest):
                found = client
        return found

    def __bool__(self) -> bool:
        return bool(self.clients)

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.clients)
