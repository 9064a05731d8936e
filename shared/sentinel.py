"""Sentinel-managed Redis, named by one URL for both the store and the broker.

`redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master_name>/<db>`

redis-py reads no URL of that kind and kombu's own form (`sentinel://h1:26379;sentinel://h2`,
with `master_name` in the transport options) cannot name the master. One form, parsed here,
serves both: shared/wiring.py builds the store's client through redis-py's `Sentinel.master_for`,
and `celery_broker` turns the same URL into kombu's `sentinel://` transport. Two URLs that name
the same sentinels, master and database are the same Redis (shared/broker_messages.py), so the
web's one-step enqueue still holds behind Sentinel. The password is the Redis servers'; the
sentinels are reached without one (redis-py passes only the socket options on to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """Where a sentinel-managed Redis is found: its sentinels, the master's name, a database."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None

    def kombu_url(self) -> str:
        """kombu's form: one `sentinel://` URL per sentinel, joined by `;` (kombu's failover
        list, which its sentinel channel reads as the sentinels)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return ";".join(f"sentinel://{auth}{_netloc(host, port)}/{self.db}"
                        for host, port in self.sentinels)


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse `redis+sentinel://...`; ValueError says what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    netloc = parts.netloc.rpartition("@")[2]
    if not netloc:
        raise ValueError("name at least one sentinel: host:port[,host:port...]")
    sentinels = tuple(_sentinel(item) for item in netloc.split(","))
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError("the path is /<master_name>[/<db>]")
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ValueError(f"the Redis database must be a number, not {segments[1]!r}") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SentinelUrl(sentinels, segments[0], db, username, password)


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """The broker URL kombu takes, and the transport options it needs besides ours."""
    if urlsplit(url.strip()).scheme.lower() == "sentinel":
        # kombu's own form cannot say which master; ours can, and keeps one form for both
        raise ValueError(
            f"use {SCHEME}://host:port[,host:port]/<master_name>/<db>: kombu's sentinel:// "
            "form names no master"
        )
    if not is_sentinel_url(url):
        return url, {}
    parsed = parse_sentinel_url(url)
    return parsed.kombu_url(), {"master_name": parsed.master}


def _sentinel(item: str) -> tuple[str, int]:
    # urlsplit reads only the netloc's last host, so each one is split here
    item = item.strip()
    if item.startswith("["):  # an IPv6 address: [::1]:26379
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"a sentinel needs a host: {item!r}")
    try:
        number = int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"a sentinel's port must be a number: {item!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"a sentinel's port is out of range: {item!r}")
    return host, number


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
