"""A fresh deployment has its pool as soon as beat starts, not one maintenance period later:
two schedulers start at once, the period is an hour, and the pool is bought once."""

from __future__ import annotations

import time

import pytest

from devtools.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

TARGETS = {"GB": 2, "US": 1}


def test_beat_start_buys_the_pool_once_even_with_two_schedulers(tmp_path):
    config = StackConfig(
        state_dir=tmp_path, beat=False, workers=2,
        pool_targets=",".join(f"{c}={n}" for c, n in TARGETS.items()),
        # no scheduled run can happen during the test: only the one at start can buy
        extra_env={"SMSPROXY_POOL_MAINTENANCE_SECONDS": "3600"},
    )
    with Stack(config) as stack:
        assert stack.sandbox is not None
        sandbox = stack.sandbox.client
        assert sandbox.owned_numbers() == []
        stack.start_beat("beat1")
        stack.start_beat("beat2")  # as if an operator (or a rollout) started two at once
        deadline = time.monotonic() + 60
        while len(stack.api("GET", "/v1/numbers").json()["numbers"]) < sum(TARGETS.values()):
            assert time.monotonic() < deadline, f"no pool after beat started; logs in {stack.logs}"
            time.sleep(0.2)
        for name in ("beat1", "beat2"):  # both published their run at start
            deadline = time.monotonic() + 30
            while "pool maintenance queued at start" not in (
                    stack.logs / f"{name}.log").read_text(errors="replace"):
                assert time.monotonic() < deadline, f"{name} did not queue maintenance at start"
                time.sleep(0.2)
        stack.sandbox.client.wait_until_idle(timeout=20)
        _wait_for_both_runs(stack)
        owned = sandbox.owned_numbers()
        # bought once: exactly the targets, whatever the second run found
        assert {c: sum(1 for n in owned if n["country"] == c) for c in TARGETS} == TARGETS
        assert len(owned) == sum(TARGETS.values())


def _wait_for_both_runs(stack: Stack) -> None:
    """Both runs at start have finished: each either maintained or was skipped under the lock."""
    deadline = time.monotonic() + 30
    while True:
        logs = "".join(f.read_text(errors="replace") for f in stack.logs.glob("worker*.log"))
        done = logs.count("pool maintained:") + logs.count("already running elsewhere")
        if done >= 2:
            return
        assert time.monotonic() < deadline, "the second run at start never finished"
        time.sleep(0.2)
