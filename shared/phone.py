"""Phone numbers: E.164 at the API, Vonage msisdns (digits, no `+`) everywhere inside."""

from __future__ import annotations

import re

import phonenumbers

# How people write a number: ASCII digits and the usual separators. phonenumbers itself also
# reads other scripts' digits ("+٤٤..." is +44...), full-width digits and letters ("+1 800
# FLOWERS"): a number must be written with the digits it is.
_WRITTEN = re.compile(r"[0-9 +().-]+")


class InvalidNumber(ValueError):
    """A participant number that cannot be a real phone number."""


def to_msisdn(raw: str, default_region: str | None = None) -> str:
    """Normalise any common written form (`+44 7700 900001`, `0044...`) to digits-only E.164."""
    text = raw.strip()
    if not _WRITTEN.fullmatch(text) and any(ch.isdigit() for ch in text):
        raise InvalidNumber(
            "must be written with ASCII digits 0-9 (spaces, +, -, . and parentheses allowed)"
        )
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidNumber("not a phone number in international form (+country code)") from None
    # Only the length is judged here: whether the number exists is Number Insight's call, and
    # numbering plans change faster than a pinned metadata release.
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber("not a possible phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def to_e164(msisdn: str) -> str:
    """The API's form of a stored msisdn."""
    return f"+{msisdn}"


def country_of(msisdn: str) -> str | None:
    """ISO 3166 alpha-2 region of a msisdn by its numbering plan, if any."""
    try:
        parsed = phonenumbers.parse(f"+{msisdn}", None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(parsed)


def mask(number: str | None) -> str:
    """What logs may show of a phone number: its last four digits."""
    if not number:
        return "-"
    digits = "".join(ch for ch in number if ch.isdigit())
    return f"***{digits[-4:]}" if len(digits) > 4 else "***"


_COSTLY = frozenset({phonenumbers.PhoneNumberType.PREMIUM_RATE,
                     phonenumbers.PhoneNumberType.SHARED_COST})


def is_costly(msisdn: str) -> bool:
    """Whether the numbering plan makes the number premium-rate or shared-cost: a text to it
    may earn its owner a share (SMS pumping), so no automatic reply goes there."""
    try:
        parsed = phonenumbers.parse(f"+{msisdn}", None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) in _COSTLY
