"""bench/create_active.py still runs: the whole stack on toy sizes (figures mean nothing here),
each case's ratio lines printed, and the sandbox's count of Number Insight calls as the cache
says (both participants looked up when fresh, neither when returning)."""

from __future__ import annotations

import pytest

from bench import create_active

pytestmark = pytest.mark.e2e


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
    assert out.count("ratio p50") == 2 and "Number Insight calls 0 for 6" in out
