"""The benchmarks still run: each one's core on toy sizes (seconds), so that they do not rot.

The figures at these sizes mean nothing; only that every step runs and the result has its
shape. Each benchmark starts private redis-servers of its own (real ones: MEMORY USAGE, INFO
and Lua are what they measure).
"""

from __future__ import annotations

import pytest

from bench import accounts, added_latency, memory, numbers_needed, relay_e2e, route_lookup


def test_route_lookup_runs_on_toy_sizes(capsys):
    figures = route_lookup.measure(small=40, large=400, lookups=200, repeats=1, block=50)
    assert figures["median_us"]["large"]["find_route"] > 0
    assert set(figures["ratio"]) == set(route_lookup.MEASURES)
    route_lookup.report(figures)
    assert "find_route" in capsys.readouterr().out


def test_memory_runs_on_toy_sizes(capsys):
    figures = memory.measure(conversations=30, processes=1, pool_size=5, intros="after")
    for state in ("established", "delivered"):
        counts = figures[state]["key_counts"]
        assert counts["conversation record"] == 30
        assert figures[state]["total"] > 0
    assert figures["established"]["key_counts"]["bodies awaiting their send"] == 60
    assert figures["delivered"]["key_counts"]["bodies awaiting their send"] == 0
    assert figures["ratio_to_goal"] == figures["bytes_per_conversation"] / memory.GOAL_BYTES
    memory.report(figures)
    out = capsys.readouterr().out
    assert "bytes per live conversation" in out and "ratio to goal" in out
    assert figures["folded_intros"]["folded"] == 60
    assert figures["delivered"]["key_counts"]["intro outbound records"] == 0
    each = memory.measure(conversations=30, processes=1, pool_size=5)  # as the product sends
    assert each["established"] is None and each["folded_intros"]["folded"] == 60
    memory.report(each)


def test_numbers_needed_runs_on_toy_sizes(capsys):
    figures = numbers_needed.measure(conversations=160, k=3, heavy_users=3, population=400)
    assert figures["ours_exhausted"] == 0
    assert figures["fewer_exhausted"] > 0
    assert figures["peak_simultaneous"] >= figures["k"]
    numbers_needed.report(figures)
    assert "ours, pool of k" in capsys.readouterr().out


@pytest.mark.e2e
def test_accounts_runs_on_toy_sizes(capsys):
    figures = accounts.measure(messages=20, rounds=1)
    assert figures["lost"] == figures["duplicated"] == 0
    assert figures["two_accounts_used"] == 2 and figures["ratio"] > 0
    accounts.report(figures, 20)
    assert "two accounts" in capsys.readouterr().out


@pytest.mark.e2e
def test_added_latency_runs_on_toy_sizes(capsys):
    figures = added_latency.measure(rates=[5], seconds=2, idle=2, conversations=3)
    steady = figures["rates"][5]
    assert steady["messages"] == steady["sent"] == 10 and steady["lost"] == 0
    assert steady["p99_ms"] >= steady["p50_ms"]
    assert figures["cold_ms"] == figures["cold_ms"]  # measured (not NaN: its send arrived)
    added_latency.report(figures, 2)
    out = capsys.readouterr().out
    assert "5 messages/s: added p50" in out and "ratio p99 / provider latency" in out
    assert "first message after 2 s idle" in out


@pytest.mark.e2e
def test_relay_throughput_runs_on_toy_sizes(capsys):
    figures = relay_e2e.measure(messages=20, conversations=4, rounds=1)
    assert figures["lost"] == figures["duplicated"] == 0
    assert figures["limit_rate"] > 0 and figures["ratio"] > 0 and figures["commands"] > 0
    relay_e2e.report(figures, 20)
    out = capsys.readouterr().out
    assert "to the limit (goal >= 0.8)" in out and "Redis round trips" in out
    assert "CPU per message, by process" in out
