"""How an SMS text is encoded and split into concatenated parts."""

from enum import StrEnum

# GSM 03.38 default alphabet (without ESC) and its extension table, whose characters take two
# septets (ESC + char).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM, CONCAT_GSM = 160, 153
SINGLE_UCS2, CONCAT_UCS2 = 70, 67
MAX_TEXT_LENGTH = 3200


class Encoding(StrEnum):
    """The `type` a part travels as."""

    TEXT = "text"
    UNICODE = "unicode"


def encoding_for(text: str, requested: str | None = None) -> Encoding:
    """UCS-2 when asked for or when any character is outside GSM-7, else GSM-7."""
    if requested == Encoding.UNICODE:
        return Encoding.UNICODE
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        return Encoding.TEXT
    return Encoding.UNICODE


def split(text: str, encoding: Encoding) -> list[str]:
    """The parts `text` is sent as; one part when it fits a single SMS."""
    if encoding == Encoding.TEXT:
        cost, single, concat = _septets, SINGLE_GSM, CONCAT_GSM
    else:
        cost, single, concat = _utf16_units, SINGLE_UCS2, CONCAT_UCS2
    if sum(cost(ch) for ch in text) <= single:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        # A character never straddles two parts: an ESC pair or a surrogate pair stays whole.
        if used + cost(ch) > concat:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost(ch)
    parts.append("".join(current))
    return parts


def _septets(ch: str) -> int:
    return 2 if ch in GSM_EXTENSION else 1


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1
