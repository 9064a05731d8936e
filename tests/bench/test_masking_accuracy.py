"""The masking figures of docs/privacy.md, computed on the committed corpus: a change to the
matcher or its leniency that masks benign texts or misses numbers fails here."""

from __future__ import annotations

from phonenumbers import Leniency

from bench import masking_accuracy
from bench.masking_corpus import BENIGN, CONTACT


def test_the_leniency_used_keeps_false_positives_and_misses_low():
    figures = masking_accuracy.measure()
    assert figures.false_positive_rate <= 0.05, figures.wrong
    assert figures.miss_rate <= 0.10, figures.wrong
    assert figures.overmasked_items == 0, figures.wrong


def test_every_number_written_in_digits_in_the_senders_formats_is_caught():
    # the corpus's last entries are the evasions and foreign national formats (known misses);
    # everything before them is a number or an address as people type it
    plain = CONTACT[:-8]
    figures = masking_accuracy.measure(benign=BENIGN[:1], contact=plain)
    assert figures.missed_items == 0, figures.wrong


def test_possible_leniency_would_mask_prices_and_order_numbers():
    lenient = masking_accuracy.measure(Leniency.POSSIBLE)
    used = masking_accuracy.measure()
    assert lenient.false_positive_texts > 5 * max(1, used.false_positive_texts)
    assert any("12.50" in line for line in lenient.wrong)


def test_the_report_prints_each_leniency(capsys):
    assert masking_accuracy.main([]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and "<- used" in out and "POSSIBLE" in out
