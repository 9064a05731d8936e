"""Contact details found and replaced: phone numbers in the sender's formats, e-mail, links."""

from __future__ import annotations

import pytest

from shared.masking import (
    ContactKind,
    Masked,
    find_contacts,
    mask_contacts,
    parse_kinds,
    region_of,
)

ALL = frozenset(ContactKind)
PHONE = frozenset({ContactKind.PHONE})
DEFAULT = frozenset({ContactKind.PHONE, ContactKind.EMAIL})


@pytest.mark.parametrize(("region", "text"), [
    ("GB", "call me on +44 7400 111111 instead"),
    ("GB", "07911 123456"),
    ("GB", "07911-123-456"),
    ("GB", "07911.123.456"),
    ("GB", "0044 7911 123456"),
    ("GB", "020 7946 0018"),
    ("US", "(212) 736-5000"),
    ("US", "+1 212 736 5000"),
    ("US", "212.736.5000"),
    (None, "+44 7400 111111"),
])
def test_a_number_in_the_senders_formats_is_masked(region, text):
    masked = mask_contacts(text, PHONE, region, "[hidden]")
    assert masked.count == 1
    assert not any(ch.isdigit() for ch in masked.text), masked.text
    assert "[hidden]" in masked.text


@pytest.mark.parametrize("text", [
    "The fare is £12.50", "meet at 10:30", "order 4829301", "Flat 12, SW1A 1AA",
    "on 12/05/2024", "2 x 500ml", "door code 4471",
])
def test_prices_times_and_references_are_left_alone(text):
    assert mask_contacts(text, ALL, "GB", "[hidden]") == Masked(text, 0)


def test_a_national_number_needs_the_senders_country():
    # a US national number is not a number to a GB reader, and vice versa
    assert mask_contacts("(212) 736-5000", PHONE, "GB", "#").count == 0
    assert mask_contacts("07911 123456", PHONE, "US", "#").count == 0
    assert mask_contacts("07911 123456", PHONE, None, "#").count == 0


def test_email_addresses_are_masked_and_the_sentence_kept():
    text = "mail bob.smith+rides@mail.example.co.uk. Thanks"
    masked = mask_contacts(text, frozenset({ContactKind.EMAIL}), "GB", "[e-mail]")
    assert masked == Masked("mail [e-mail]. Thanks", 1)


def test_links_only_when_asked_and_without_the_closing_punctuation():
    text = "photos at https://example.com/item/829301?x=1), or www.example.org."
    assert mask_contacts(text, DEFAULT, "GB", "#").count == 0
    masked = mask_contacts(text, frozenset({ContactKind.LINK}), "GB", "#")
    assert masked == Masked("photos at #), or #.", 2)


def test_each_item_is_counted_and_overlaps_are_one():
    text = "07911 123456 or +1 212 736 5000 or a@example.com, www.a@example.com"
    masked = mask_contacts(text, ALL, "GB", "*")
    assert masked.text == "* or * or *, *"
    assert masked.count == 4
    assert find_contacts(text, frozenset(), "GB") == []


def test_a_marker_that_looks_like_a_number_is_not_masked_again():
    masked = mask_contacts("call 07911 123456", PHONE, "GB", "07911 000000")
    assert masked == Masked("call 07911 000000", 1)


def test_nothing_is_masked_when_no_kind_is_chosen():
    assert mask_contacts("07911 123456 a@example.com", frozenset(), "GB", "#").count == 0


def test_kinds_parse_from_a_setting():
    assert parse_kinds("phone, EMAIL") == DEFAULT
    assert parse_kinds("") == parse_kinds("none") == frozenset()
    with pytest.raises(ValueError, match="'fax' is not one of"):
        parse_kinds("phone,fax")


def test_region_of_a_sender():
    assert region_of("447400111111") == "GB"
    assert region_of("12127365000") == "US"
    assert region_of("999") is None
