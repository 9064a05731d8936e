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



@pytest.mark.parametrize(
    "raw",
    [
        "+٤٤٧٤٠٠١٢٣٤٥٦",  # Arabic-Indic digits: phonenumbers reads them as +447400123456
        "+44 ٧٤٠٠ 123456",
        "+۴۴۷۴۰۰۱۲۳۴۵۶",  # Extended Arabic-Indic (Persian)
        "+４４７４００１２３４５６",  # full-width
        "+44\u00a07400123456",  # a no-break space
        "+1 800 FLOWERS",  # letters
        "tel:+447400123456",
        "+44\x007400123456",
    ],
)
def test_only_ascii_digits_make_a_number(raw):
    with pytest.raises(InvalidNumber, match="ASCII digits"):
        to_msisdn(raw)
