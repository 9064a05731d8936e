"""Where callbacks may go: https, public addresses only, however written (issue 12.3)."""

import socket

import pytest

from shared.callback_urls import (
    CallbackPolicy,
    UnsafeDestination,
    check_url,
    parse_hosts,
    resolve,
)

STRICT = CallbackPolicy()
DEV = CallbackPolicy(allow_http=True)


@pytest.mark.parametrize("url", [
    "https://market.example/hooks?x=1",
    "https://market.example:8443/hooks",
    "https://93.184.216.34/hooks",
    "https://[2606:4700:4700::1111]/hooks",
    "https://MARKET.example./hooks",
])
def test_public_https_urls_are_accepted(url):
    check_url(url, STRICT)


@pytest.mark.parametrize(("url", "address_class"), [
    ("https://127.0.0.1/", "loopback"),
    ("https://127.8.9.10/", "loopback"),
    ("https://[::1]/", "loopback v6"),
    ("https://169.254.169.254/latest/meta-data", "link-local (cloud metadata)"),
    ("https://[fe80::1%25eth0]/", "link-local v6 with a zone"),
    ("https://10.1.2.3/", "private"),
    ("https://172.16.0.1/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://100.64.0.1/", "shared (carrier-grade NAT)"),
    ("https://[fc00::1]/", "unique-local"),
    ("https://[fd12:3456::1]/", "unique-local"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("https://[::ffff:7f00:1]/", "IPv4-mapped, hex"),
    ("https://[2002:7f00:1::]/", "6to4 around loopback"),
    ("https://[64:ff9b::a9fe:a9fe]/", "NAT64 around the metadata address"),
    ("https://2130706433/", "integer form"),
    ("https://0x7f000001/", "hex integer form"),
    ("https://0x7f.1/", "hex short form"),
    ("https://0177.0.0.1/", "octal form"),
    ("https://127.1/", "short form"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::]/", "unspecified v6"),
    ("https://224.0.0.1/", "multicast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://127.0.0.1./", "trailing dot"),
    ("https://localhost/", "localhost by name"),
    ("https://api.localhost/", "a .localhost name"),
])
def test_non_public_destinations_are_refused(url, address_class):
    with pytest.raises(UnsafeDestination):
        check_url(url, DEV)


@pytest.mark.parametrize("url", [
    "https://user:pw@market.example/", "https://user@market.example/",
    "https://@market.example/", "https://market.example@127.0.0.1/",
])
def test_userinfo_is_refused(url):
    with pytest.raises(UnsafeDestination, match="user name or password"):
        check_url(url, STRICT)


@pytest.mark.parametrize("url", [
    "http://market.example/", "ftp://market.example/", "file:///etc/passwd", "//market.example/",
    "https:///nohost", "https://[::1", "https://market.example:99999/", "gopher://x/",
])
def test_only_https_urls(url):
    with pytest.raises(UnsafeDestination, match="https URL"):
        check_url(url, STRICT)


@pytest.mark.parametrize("url", [
    "https://exa mple.com/", "https://bücher.example/", "https://a%2fb.example/",
    "https://1.1.1.1 x/",
])
def test_host_names_are_plain_ascii(url):
    with pytest.raises(UnsafeDestination, match="ASCII"):
        check_url(url, STRICT)


def test_http_only_with_the_development_setting():
    check_url("http://market.example/hooks", DEV)
    with pytest.raises(UnsafeDestination):
        check_url("ftp://market.example/", DEV)


def test_allow_listed_hosts_skip_the_address_checks():
    policy = CallbackPolicy(allow_http=True, allowed_hosts=parse_hosts("127.0.0.1, LocalHost"))
    assert check_url("http://127.0.0.1:8000/events", policy).allowed
    assert check_url("http://localhost:8000/events", policy).allowed
    with pytest.raises(UnsafeDestination):
        check_url("http://127.0.0.2/events", policy)
    with pytest.raises(UnsafeDestination):  # userinfo is never allowed
        check_url("http://u:p@127.0.0.1/events", policy)


def _resolving_to(monkeypatch, *addresses):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_resolve_refuses_a_name_with_any_non_public_address(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34", "10.0.0.5")
    with pytest.raises(UnsafeDestination, match="10.0.0.5"):
        resolve(check_url("https://rebind.example/", STRICT))


def test_resolve_gives_the_checked_addresses(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34", "2606:4700:4700::1111", "93.184.216.34")
    assert resolve(check_url("https://market.example/", STRICT)) == (
        "93.184.216.34", "2606:4700:4700::1111")


def test_an_unresolvable_name_is_a_connection_error_to_retry(monkeypatch):
    def fail(*_args, **_kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(ConnectionError):
        resolve(check_url("https://market.example/", STRICT))
