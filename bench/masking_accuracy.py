"""How well contact-detail masking does on the corpus: false positives and misses, per leniency.

`python -m bench.masking_accuracy`: for each `phonenumbers` leniency, the share of benign texts
that had anything masked (false positives) and the share of the corpus's contact details left in
(misses, counted per item), with the texts that went wrong under the leniency the proxy uses.
The figures are in docs/privacy.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from phonenumbers import Leniency

from bench.masking_corpus import BENIGN, CONTACT, Entry
from shared import masking
from shared.masking import ContactKind

DEFAULT_KINDS = frozenset({ContactKind.PHONE, ContactKind.EMAIL})
LENIENCIES = {
    "POSSIBLE": Leniency.POSSIBLE,
    "VALID": Leniency.VALID,
    "STRICT_GROUPING": Leniency.STRICT_GROUPING,
    "EXACT_GROUPING": Leniency.EXACT_GROUPING,
}


@dataclass(frozen=True, slots=True)
class Figures:
    benign_texts: int
    false_positive_texts: int
    contact_items: int
    missed_items: int
    overmasked_items: int  # masked in a contact text beyond the items it carries
    wrong: tuple[str, ...]

    @property
    def false_positive_rate(self) -> float:
        return self.false_positive_texts / self.benign_texts

    @property
    def miss_rate(self) -> float:
        return self.missed_items / self.contact_items


def _count(entry: Entry, leniency: int) -> int:
    region, text, _ = entry
    return len(masking.find_contacts(text, DEFAULT_KINDS, region, leniency))


def measure(leniency: int = masking.MATCH_LENIENCY, benign: Sequence[Entry] = BENIGN,
            contact: Sequence[Entry] = CONTACT) -> Figures:
    """The figures with the phone matcher at `leniency`."""
    wrong: list[str] = []
    false_positives = 0
    for entry in benign:
        if _count(entry, leniency):
            false_positives += 1
            wrong.append(f"false positive: {entry[1]}")
    missed = over = 0
    for entry in contact:
        found, expected = _count(entry, leniency), entry[2]
        missed += max(0, expected - found)
        over += max(0, found - expected)
        if found != expected:
            wrong.append(f"found {found} of {expected}: {entry[1]}")
    return Figures(len(benign), false_positives, sum(e[2] for e in contact), missed, over,
                   tuple(wrong))


def report(figures: dict[str, Figures], chosen: str) -> None:
    print(f"{'leniency':<16} {'false positives':>22} {'missed':>18} {'over-masked':>12}")
    for name, f in figures.items():
        mark = "  <- used" if name == chosen else ""
        print(f"{name:<16} {f.false_positive_texts:>4}/{f.benign_texts} texts "
              f"({f.false_positive_rate:6.1%}) {f.missed_items:>4}/{f.contact_items} items "
              f"({f.miss_rate:5.1%}) {f.overmasked_items:>12}{mark}")
    print(f"\nwhat {chosen} got wrong:")
    for line in figures[chosen].wrong or ("nothing",):
        print(f"  {line}")


def main(argv: Sequence[str] = ()) -> int:
    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0]).parse_args(argv)
    chosen = next(n for n, lv in LENIENCIES.items() if lv == masking.MATCH_LENIENCY)
    report({name: measure(lv) for name, lv in LENIENCIES.items()}, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
