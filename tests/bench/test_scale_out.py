"""bench/scale_out.py's arithmetic: the rate-limit window check and the CPU accounting (the
benchmark itself needs root, network namespaces and minutes, so it is not run here)."""

from __future__ import annotations

import os

from bench.scale_out import cpu_seconds, worst_window_excess


def test_a_paced_run_stays_within_the_burst():
    # 5 at once, then one every 0.1 s: a bucket of 10/s with burst 5 allows exactly this
    times = [0.0] * 5 + [0.1 * k for k in range(1, 21)]
    assert worst_window_excess(times, 10.0) <= 5 + 1e-9


def test_a_run_above_the_rate_exceeds_the_burst():
    times = [0.05 * k for k in range(40)]  # 20/s for 2 s
    assert worst_window_excess(times, 10.0) > 5


def test_cpu_seconds_reads_our_own_process():
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert cpu_seconds([os.getpid()]) > 0
    assert cpu_seconds([2**22 + 12345]) == 0  # a pid that does not exist counts nothing
