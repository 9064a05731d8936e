"""Where the proxy may POST events: public https destinations, checked when given and again
when delivered (shared/callbacks.py resolves and pins the address it checked).

A `callback_url` is chosen by a marketplace client, so without these checks the workers would
POST wherever a client points them: the cloud metadata service (169.254.169.254), Redis on
loopback, the private network. Operators name exceptions (their own local receivers) in
SMSPROXY_CALLBACK_ALLOWED_HOSTS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[a-z0-9._-]+")


class UnsafeDestination(ValueError):
    """A URL or an address the proxy must not send to; the message says why."""


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """Where events may go: https only unless `allow_http`; `allowed_hosts` (the operator's
    own receivers) skip the address checks."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL's parts: scheme, host (lowercase, no brackets), port, path with query."""

    scheme: str
    host: str
    port: int
    target: str
    allowed: bool  # named in the operator's allow-list: no address checks

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally routable unicast, looking inside IPv6 wrappings."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def _literal_address(host: str) -> tuple[IPAddress | None, bool]:
    """The address a host names literally, and whether it is written in the standard form;
    (None, True) for a name. `inet_aton`, as resolvers do, reads `2130706433`, `0x7f.1` and
    `127.1` as 127.0.0.1."""
    try:
        return ipaddress.ip_address(host), True
    except ValueError:
        pass
    if ":" in host:
        return None, True
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host)), False
    except OSError:
        return None, True


def check_url(url: str, policy: CallbackPolicy) -> Destination:
    """The destination of a callback URL, or UnsafeDestination saying what is wrong with it."""
    allow_http, allowed_hosts = policy.allow_http, policy.allowed_hosts
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port out of range
        raise UnsafeDestination("must be an https URL") from None
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes or not parts.hostname:
        raise UnsafeDestination(
            "must be an http(s) URL" if allow_http else "must be an https URL"
        )
    if "@" in parts.netloc:
        raise UnsafeDestination("must not hold a user name or password")
    host = parts.hostname.rstrip(".")
    if ":" not in host and not _HOST_NAME.fullmatch(host):
        # what a resolver, SNI and the Host header all take as is (IDNs written as punycode)
        raise UnsafeDestination("must name its host in ASCII letters, digits, '.', '-' and '_'")
    allowed = host in allowed_hosts
    if not allowed:
        literal, standard = _literal_address(host)
        if literal is not None and (not standard or not is_public(literal)):
            raise UnsafeDestination(
                "must not point at a loopback, private, link-local or otherwise non-public "
                "address (or write one in a non-standard form)"
            )
        if host == "localhost" or host.endswith(".localhost"):
            raise UnsafeDestination("must not point at localhost")
    return Destination(
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        allowed=allowed,
    )


def resolve(destination: Destination) -> tuple[str, ...]:
    """The addresses to connect to (and only those: no second lookup may pick another); every
    address the host resolves to must be public unless the host is allow-listed."""
    try:
        found = socket.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM)
    except OSError as exc:  # includes socket.gaierror: a name that does not resolve (yet)
        raise ConnectionError(f"cannot resolve the host: {type(exc).__name__}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise ConnectionError("the host resolves to no address")
    if not destination.allowed:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise UnsafeDestination(f"the host resolves to a non-public address ({refused[0]})")
    return tuple(dict.fromkeys(str(a) for a in addresses))


def parse_hosts(raw: str) -> frozenset[str]:
    """`127.0.0.1, localhost,[::1]` → the hosts as check_url compares them."""
    return frozenset(
        item.strip().lower().strip("[]").rstrip(".") for item in raw.split(",") if item.strip()
    )
