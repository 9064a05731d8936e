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

