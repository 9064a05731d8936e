"""What the sandbox knows about a phone number: validity, country, formats, line type."""

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from sandbox.countries import COUNTRIES

MSISDN_RE = re.compile(r"^[1-9][0-9]{6,14}$")

# Ranges reserved for fiction (Ofcom's drama numbers), which `phonenumbers` calls invalid but which
# tests and examples use as handsets and virtual numbers: (first, last, region, type).
_FICTIONAL_RANGES: tuple[tuple[int, int, str, str], ...] = (
    (447700900000, 447700900999, "GB", "mobile"),
)

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


@dataclass(frozen=True)
class PhoneInfo:
    """A valid number as Number Insight basic describes it."""

    msisdn: str
    region: str
    country_prefix: str
    national_format: str
    country_name: str
    alpha3: str
    line_type: str  # "mobile", "landline" or "toll-free"


def lookup(number: str, country: str | None = None) -> PhoneInfo | None:
    """Describe `number` (international digits, else national in `country`); None if invalid."""
    digits = number.strip().lstrip("+")
    if not digits.isdigit() or not digits.isascii():
        return None
    # A country hint means "read it as a national number if it is one", as Vonage documents.
    parsed = _parse(digits, country.upper()) if country else None
    if parsed is None:
        parsed = _parse(digits, None)
    if parsed is None:
        return None
    number_obj, region, line_type = parsed
    alpha3, country_name = COUNTRIES.get(region, ("", region))
    return PhoneInfo(
        msisdn=phonenumbers.format_number(number_obj, PhoneNumberFormat.E164).lstrip("+"),
        region=region,
        country_prefix=str(number_obj.country_code),
        national_format=phonenumbers.format_number(number_obj, PhoneNumberFormat.NATIONAL),
        country_name=country_name,
        alpha3=alpha3,
        line_type=line_type,
    )


def is_msisdn(value: str) -> bool:
    """True for an international number written as Vonage wants it: digits, no `+`, no `00`."""
    return bool(MSISDN_RE.match(value))


def _parse(digits: str, region: str | None) -> tuple[phonenumbers.PhoneNumber, str, str] | None:
    text = digits if region else f"+{digits}"
    try:
        number_obj = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # E.164 keeps the leading zero some countries (Italy) have in the national number.
    full = int(phonenumbers.format_number(number_obj, PhoneNumberFormat.E164).lstrip("+"))
    for first, last, fictional_region, line_type in _FICTIONAL_RANGES:
        if first <= full <= last:
            return number_obj, fictional_region, line_type
    if not phonenumbers.is_valid_number(number_obj):
        return None
    found_region = phonenumbers.region_code_for_number(number_obj) or ""
    kind = phonenumbers.number_type(number_obj)
    if kind in _MOBILE_TYPES:
        line_type = "mobile"
    elif kind == PhoneNumberType.TOLL_FREE:
        line_type = "toll-free"
    else:
        line_type = "landline"
    return number_obj, found_region, line_type
