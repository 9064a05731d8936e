"""Vonage webhook signatures: all five methods, constant-time, with a freshness window."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from shared.settings import SignatureMethod

MAX_SKEW_SECONDS = 300
# Every name Vonage sends is made of these (and is not empty). The signing string joins
# `&key=value` without escaping keys, so a key holding `&` or `=` would let one signed request
# be re-split into another that still verifies.
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]")

_HMAC_DIGESTS = {
    SignatureMethod.MD5: hashlib.md5,
    SignatureMethod.SHA1: hashlib.sha1,
    SignatureMethod.SHA256: hashlib.sha256,
    SignatureMethod.SHA512: hashlib.sha512,
}


def safe_parameter_names(params: Mapping[str, str]) -> bool:
    """Whether every name is one the signing string cannot confuse (letters, digits, `_`, `-`)."""
    return _safe_names(list(params))


def _safe_names(names: list[str]) -> bool:
    # one search over all the names at once: a name is judged by its characters alone
    return all(names) and _NOT_IN_A_NAME.search("".join(names)) is None


def signing_string(params: Mapping[str, str]) -> str:
    """`&k1=v1&k2=v2...` over every parameter but `sig`, sorted, `&` and `=` in values as `_`."""
    if not _safe_names([key for key in params if key != "sig"]):
        raise ValueError("parameter names may hold only letters, digits, '_' and '-'")
    return _signing_string(params)


def _signing_string(params: Mapping[str, str]) -> str:
    """`signing_string` of parameters whose names were found safe."""
    parts = []
    for key in sorted(params):
        if key == "sig":
            continue
        value = str(params[key]).replace("&", "_").replace("=", "_")
        parts.append(f"&{key}={value}")
    return "".join(parts)


def sign(params: Mapping[str, str], secret: str, method: SignatureMethod) -> str:
    """The hex signature Vonage would put in `sig` for these parameters."""
    return _sign(signing_string(params), secret, method)


def _sign(payload: str, secret: str, method: SignatureMethod) -> str:
    if method is SignatureMethod.MD5HASH:
        # Vonage's legacy scheme is a plain MD5 over payload+secret; not our choice of hash.
        return hashlib.md5((payload + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), payload.encode(), _HMAC_DIGESTS[method]).hexdigest()


def verify(
    params: Mapping[str, str], secret: str, method: SignatureMethod, now: float
) -> str | None:
    """None when the webhook is authentic and fresh, else why not (for a 401 body and a metric)."""
    given = params.get("sig", "")
    if not given:
        return "missing sig"
    if not safe_parameter_names(params):
        return "bad parameter name"
    raw_timestamp = params.get("timestamp", "")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        return "missing or malformed timestamp"
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        return "stale timestamp"
    # the names were checked above: the signing string is made without checking them again
    expected = _sign(_signing_string(params), secret, method)
    if not hmac.compare_digest(expected.lower().encode(), given.strip().lower().encode()):
        return "bad sig"
    return None
