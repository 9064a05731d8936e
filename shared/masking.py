"""Contact details in relayed text: found, and replaced by a short marker.

The product keeps two people's numbers apart and their conversation on the platform; a text
that carries a phone number or an e-mail address undoes both. Phone numbers are found by
`phonenumbers.PhoneNumberMatcher` with the sender's country as the region for national
formats; e-mail addresses and links by conservative patterns (the aim is friction, not a perfect
parser). How well this works on realistic texts, and the command that measures it:
docs/privacy.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher


class ContactKind(StrEnum):
    """What may be masked in a relayed text."""

    PHONE = "phone"
    EMAIL = "email"
    LINK = "link"


# Chosen on the corpus (bench/masking_corpus.py): VALID catches every real number there and
# none of the prices, times or references; POSSIBLE also takes "12.50" and 7-digit order numbers.
MATCH_LENIENCY = Leniency.VALID
# The matcher's own bound on candidates tried per text: a long text of digit groups (a
# 255-part message) cannot make one relay cost more than this.
MATCH_MAX_TRIES = 2000

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# A scheme or a leading "www.": a bare "example.com" is left alone, since "ok.thanks" or
# "3.30pm" written without spaces would look the same.
_LINK = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")
# What a link may end with that belongs to the sentence, not to the link.
_LINK_TRAILER = ".,;:!?)]}'\""


@dataclass(frozen=True, slots=True)
class Masked:
    """A text with its contact details replaced, and how many were."""

    text: str
    count: int


def parse_kinds(raw: str) -> frozenset[ContactKind]:
    """`phone,email` into the kinds; empty or `none` is none. ValueError names a bad one."""
    kinds: set[ContactKind] = set()
    for item in raw.split(","):
        name = item.strip().lower()
        if not name or name == "none":
            continue
        try:
            kinds.add(ContactKind(name))
        except ValueError:
            allowed = ", ".join(k.value for k in ContactKind)
            raise ValueError(f"{name!r} is not one of {allowed} (or none)") from None
    return frozenset(kinds)


def region_of(msisdn: str) -> str | None:
    """The ISO country of a number in international digits, or None when it has none."""
    try:
        parsed = phonenumbers.parse("+" + msisdn)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else None


def find_contacts(
    text: str, kinds: frozenset[ContactKind], region: str | None,
    leniency: int = MATCH_LENIENCY,
) -> list[tuple[int, int]]:
    """The (start, end) spans of the contact details of `kinds` in `text`, in order and
    without overlaps (where two overlap, the one starting first is kept)."""
    spans: list[tuple[int, int]] = []
    if ContactKind.EMAIL in kinds:
        spans += [m.span() for m in _EMAIL.finditer(text)]
    if ContactKind.LINK in kinds:
        for match in _LINK.finditer(text):
            start, end = match.span()
            while end > start and text[end - 1] in _LINK_TRAILER:
                end -= 1
            spans.append((start, end))
    if ContactKind.PHONE in kinds:
        # "ZZ" is phonenumbers' "unknown region": only numbers written with a + are found
        matcher = PhoneNumberMatcher(
            text, region or "ZZ", leniency=leniency, max_tries=MATCH_MAX_TRIES
        )
        spans += [(m.start, m.end) for m in matcher]
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            continue
        kept.append((start, end))
    return kept


def mask_contacts(
    text: str, kinds: frozenset[ContactKind], region: str | None, marker: str
) -> Masked:
    """`text` with each contact detail of `kinds` replaced by `marker`.

    Every span is found in the original text before any is replaced, so a marker is never
    itself taken for a contact detail.
    """
    spans = find_contacts(text, kinds, region) if kinds else []
    if not spans:
        return Masked(text, 0)
    pieces: list[str] = []
    at = 0
    for start, end in spans:
        pieces += [text[at:start], marker]
        at = end
    pieces.append(text[at:])
    return Masked("".join(pieces), len(spans))
