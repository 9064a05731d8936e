import pytest

from shared.phone import InvalidNumber, country_of, mask, to_e164, to_msisdn


@pytest.mark.parametrize(
    ("raw", "msisdn"),
    [
        ("+447400123456", "447400123456"),
        ("+44 7400 123456", "447400123456"),
        ("0044 7400 123456", "447400123456"),
        ("+1 (201) 555-0123", "12015550123"),
        ("+49 151 23456789", "4915123456789"),
    ],
)
def test_common_forms_normalise_to_msisdn(raw, msisdn):
    assert to_msisdn(raw) == msisdn
    assert to_e164(msisdn) == "+" + msisdn


@pytest.mark.parametrize("raw", ["", "abc", "447400123456", "+44 12", "+1 555", "+" + "9" * 20])
def test_impossible_numbers_are_rejected(raw):
    with pytest.raises(InvalidNumber):
        to_msisdn(raw)


def test_country_and_mask():
    assert country_of("447400123456") == "GB"
    assert country_of("12015550123") == "US"
    assert mask("447400123456") == "***3456"
    assert mask(None) == "-"
    assert "123456" not in mask("447400123456")


@pytest.mark.parametrize(("text", "parts"), [
    ("", 1), ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),  # an extension character takes two septets
    ("a" * 152 + "€" + "a" * 152, 3),  # ...which never straddle two parts
    ("é" * 160, 1),  # in the GSM-7 alphabet
    ("ł" * 70, 1), ("ł" * 71, 2), ("ł" * 134, 2), ("ł" * 135, 3),  # UCS-2
    ("😀" * 35, 1), ("😀" * 36, 2),  # a surrogate pair is two UTF-16 units
])
def test_sms_parts_follow_vonages_split(text, parts):
    from shared.vonage_gateway import sms_parts

    assert sms_parts(text) == parts
