"""Plain functions of the sandbox: splitting, number ranges, number lookup."""

import pytest

from sandbox.config import parse_numbers
from sandbox.phones import lookup
from sandbox.signing import sign, signature, verify
from sandbox.sms import Encoding, encoding_for, split


def test_an_escape_pair_never_straddles_two_parts() -> None:
    text = "x" * 152 + "€" + "y" * 10

    parts = split(text, encoding_for(text))

    assert parts == ["x" * 152, "€" + "y" * 10]


def test_a_surrogate_pair_never_straddles_two_parts() -> None:
    text = "a" * 66 + "😀" + "b" * 10

    parts = split(text, encoding_for(text))

    assert encoding_for(text) == Encoding.UNICODE
    assert parts == ["a" * 66, "😀" + "b" * 10]


def test_parse_numbers() -> None:
    numbers = parse_numbers("GB:447700900100-447700900101, US:12015550100")

    assert [(n.country, n.msisdn, n.type) for n in numbers] == [
        ("GB", "447700900100", "mobile-lvn"),
        ("GB", "447700900101", "mobile-lvn"),
        ("US", "12015550100", "mobile-lvn"),
    ]
    assert parse_numbers("") == []


@pytest.mark.parametrize("spec", ["GB447700900100", "GB:12-13", "G:447700900100", "GB:2-1"])
def test_parse_numbers_rejects_bad_ranges(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_numbers(spec)


def test_lookup_knows_fictional_and_real_plans() -> None:
    assert lookup("447700900123") is not None  # Ofcom drama range
    assert lookup("442079460000") is not None  # London landline
    assert lookup("447700") is None
    assert lookup("abc") is None


def test_sign_and_verify_round_trip() -> None:
    signed = sign({"text": "a&b=c"}, "secret", "sha512")

    assert verify(signed, "secret", "sha512")
    assert not verify({**signed, "text": "a&b=d"}, "secret", "sha512")
    assert not verify({**signed, "timestamp": "1"}, "secret", "sha512")
    assert signature({"a": "1"}, "s", "md5hash") != signature({"a": "1"}, "s", "md5")
