"""Vonage's signature over request/webhook parameters, written here independently of the project."""

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

METHODS: tuple[str, ...] = ("md5hash", "md5", "sha1", "sha256", "sha512")


def signature(params: Mapping[str, str], secret: str, method: str) -> str:
    """Hex signature of every parameter except `sig`, as Vonage computes it."""
    if method not in METHODS:
        raise ValueError(f"unknown signature method {method!r}")
    base = "".join(
        f"&{key}={_clean(value)}" for key, value in sorted(params.items()) if key != "sig"
    )
    if method == "md5hash":
        # Vonage's legacy scheme is a plain MD5 over the string with the secret appended.
        return hashlib.md5((base + secret).encode()).hexdigest()  # noqa: S324
    return hmac.new(secret.encode(), base.encode(), method).hexdigest()


def sign(params: Mapping[str, str], secret: str, method: str) -> dict[str, str]:
    """A copy of `params` with `timestamp`, `nonce` and `sig` added, as a signed webhook carries."""
    signed = dict(params)
    signed["timestamp"] = str(int(time.time()))
    signed["nonce"] = secrets.token_hex(16)
    signed["sig"] = signature(signed, secret, method)
    return signed


def verify(params: Mapping[str, str], secret: str, method: str, max_skew: float = 300.0) -> bool:
    """True if `sig` matches and `timestamp`, when present, is within `max_skew` seconds of now."""
    expected = signature(params, secret, method)
    if not hmac.compare_digest(params.get("sig", "").lower(), expected):
        return False
    stamp = params.get("timestamp")
    if stamp is None:
        return True
    try:
        return abs(time.time() - int(stamp)) <= max_skew
    except ValueError:
        return False


def _clean(value: str) -> str:
    return value.replace("&", "_").replace("=", "_")
