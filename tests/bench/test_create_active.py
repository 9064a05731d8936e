"""bench/create_active.py still runs: the whole stack on toy sizes (figures mean nothing here),
each case's ratio lines printed, and the sandbox's count of Number Insight calls as the cache
says (both participants looked up when fresh, neither when returning)."""

from __future__ import annotations

import pytest

from bench import create_active


def test_round_trips_are_counted_and_a_returning_pair_remembers_nothing(capsys):
    trips = create_active.round_trips()
    assert set(trips) == {"fresh establish", "fresh sends", "returning establish",
                          "returning sends"}
    assert trips["fresh establish"]["insight_cache.py:remember"] == 2
    assert "insight_cache.py:remember" not in trips["returning establish"]
    assert trips["returning establish"]["insight_cache.py:countries"] == 1  # both in one
    create_active.report_round_trips(trips)
    assert "returning establish: " in capsys.readouterr().out


@pytest.mark.e2e
def test_create_active_runs_on_toy_sizes(capsys):
    figures = create_active.measure(creates=6, rate=5, rounds=1, variants=("product",))
    product = figures["variants"]["product"]
    fresh, returning = product["fresh"], product["returning"]
    assert fresh["made"] == returning["made"] == 6
    assert fresh["lookups"] == 12 and returning["lookups"] == 0
    for case in (fresh, returning):
        assert case["incomplete"] == case["duplicated"] == 0
        assert case["ratio_p50"] > 0 and case["limit_ms"] > 0
        assert "send_sms" not in case["tasks_per_create"]  # the intros go from the create
    create_active.report(figures, 5)
    out = capsys.readouterr().out
    assert out.count("create -> both intros accepted") == 2
    assert out.count("least disturbed round") == 2 and "Number Insight calls 0 for 6" in out
