"""Vonage facts the gateway encodes."""

import pytest

from shared.vonage_gateway import sms_parts


@pytest.mark.parametrize(("text", "parts"), [
    ("", 1), ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),  # an extension character takes two septets
    ("a" * 152 + "€" + "a" * 152, 3),  # ...which never straddle two parts
    ("é" * 160, 1),  # in the GSM-7 alphabet
    ("ł" * 70, 1), ("ł" * 71, 2), ("ł" * 134, 2), ("ł" * 135, 3),  # UCS-2
    ("😀" * 35, 1), ("😀" * 36, 2),  # a surrogate pair is two UTF-16 units
])
def test_sms_parts_follow_vonages_split(text, parts):
    assert sms_parts(text) == parts
