"""Benchmark 1 (webhook ingest) and 1b (the handler's CPU) still run, on toy sizes.

The figures at these sizes mean nothing; only that every step runs (gunicorn with each app,
wrk, the open-loop client; the in-process handlers) and that the ratio lines are printed.
"""

from __future__ import annotations

import shutil

import pytest

from bench import ingest_handler, ingest_soak, webhook_ingest


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (apt-get install wrk)")
def test_webhook_ingest_runs_on_toy_sizes(capsys):
    figures = webhook_ingest.measure(seconds=1, rounds=1, worker_classes=["gthread"], rate=50,
                                     connections=4, bodies_per_run=4000)
    f = figures["gthread"]
    assert f["errors"] == 0
    assert f["ours_rps"] > 0 and f["floor_rps"] > 0 and f["bare_rps"] > 0
    assert f["ours_web_cpu_us"] > 0
    # the fixed-rate run measures the floor too, in the same round
    assert f["fixed_p99_ms"] > 0 and f["fixed_floor_p99_ms"] > 0
    assert f["fixed_floor_errors"] == 0
    webhook_ingest.report(figures, connections=4)
    out = capsys.readouterr().out
    assert "ratio ours/floor" in out and "ratio ours/bare" in out
    assert "at a fixed 50 req/s" in out


def test_ingest_handler_runs_on_toy_sizes(capsys):
    # this tree again as the "other" tree: the --tree path runs too
    figures = ingest_handler.measure(requests=40, rounds=1, trees=[ingest_handler.ROOT])
    assert set(figures) == {"bare", "floor", "floor-wsgi", "ours",
                            f"ours@{ingest_handler.ROOT.name}"}
    assert all(f["cpu_us"] > 0 for f in figures.values())
    ingest_handler.report(figures, 40, 1)
    out = capsys.readouterr().out
    assert "ratio floor/ours" in out and f"ratio ours@{ingest_handler.ROOT.name}/ours" in out


def test_ingest_soak_runs_on_toy_sizes(capsys):
    worker_class = webhook_ingest.configured_worker_class()
    results = ingest_soak.soak(windows=2, seconds=1, rate=50, worker_class=worker_class)
    assert len(results) == 2
    assert all(w.errors == 0 and w.p99_ms > 0 and w.web_rss > 0 for w in results)
    ingest_soak.report(results, seconds=1, rate=50, worker_class=worker_class)
    out = capsys.readouterr().out
    assert f"gunicorn {worker_class}" in out and "RSS / first" in out
