"""Scenario 7: two beat schedulers at once for ten minutes of simulated time: no number bought
twice, none bought beyond the targets, and numbers the account loses are bought back once."""

from __future__ import annotations

import re
import time

import pytest

from tests.reliability.harness import reliability_stack

pytestmark = pytest.mark.reliability

PERIOD = 0.5  # seconds between maintenance runs, per scheduler (production: 60)
RUN_FOR = 30  # 60 runs per scheduler, 120 in all: ten minutes of runs at a 5 s period, and
# two hours at the default 60 s
TARGETS = {"GB": 3, "US": 2}
LOSSES = 3  # numbers cancelled behind the proxy's back, one every ~8 s


def test_two_beats_never_buy_a_number_twice(tmp_path):
    began = time.monotonic()
    env = {"SMSPROXY_POOL_MAINTENANCE_SECONDS": str(PERIOD)}
    targets = ",".join(f"{c}={n}" for c, n in TARGETS.items())
    with reliability_stack(tmp_path, env=env, pool_targets=targets, beat=True,
                           provision=None) as stack:
        assert stack.sandbox is not None
        sandbox = stack.sandbox.client
        stack.start_beat("beat2")  # a second scheduler, as if an operator started two
        _wait(lambda: len(sandbox.owned_numbers()) == sum(TARGETS.values()), 30, "pool bought")
        from shared.settings import Settings
        from shared.vonage_gateway import VonageGateway

        gateway = VonageGateway(Settings.from_env(stack.env))
        lost = []
        end = time.monotonic() + RUN_FOR
        while time.monotonic() < end:
            time.sleep(RUN_FOR / (LOSSES + 1))
            if len(lost) < LOSSES:
                victim = sandbox.owned_numbers()[0]
                gateway.cancel_number(victim["country"], victim["msisdn"])
                lost.append(victim["msisdn"])
        time.sleep(3)  # the last loss made good
        owned = sandbox.owned_numbers()
        pool = stack.api("GET", "/v1/numbers").json()["numbers"]
        worker_logs = "".join(f.read_text(errors="replace")
                              for f in stack.logs.glob("worker*.log"))
        bought = sum(int(n) for n in re.findall(r"pool maintained: .* bought (\d+)", worker_logs))
        refused = worker_logs.count("could not buy")  # a buy of a number already taken
        keeper_runs = worker_logs.count("pool maintained:")
        skipped = worker_logs.count("pool maintenance already running elsewhere")
        runs = {name: _runs(stack, name) for name in ("beat", "beat2")}
        line = (f"RELIABILITY two-beats: schedulers=2 period={PERIOD}s runtime_window={RUN_FOR}s "
                f"scheduled_runs={runs['beat']}+{runs['beat2']} maintenance_runs={keeper_runs} "
                f"skipped_under_lock={skipped} numbers_lost={len(lost)} bought={bought} "
                f"buys_refused={refused} owned={len(owned)} "
                f"target={sum(TARGETS.values())} runtime={time.monotonic() - began:.1f}s")
        print(f"\n{line}")
    by_country = {c: sum(1 for n in owned if n["country"] == c) for c in TARGETS}
    assert by_country == TARGETS, line
    assert sorted(n["number"][1:] for n in pool) == sorted(n["msisdn"] for n in owned), line
    # no buy was refused (the sandbox refuses a number already owned), and there were exactly
    # as many as the targets plus the numbers lost
    assert refused == 0, line
    assert bought == sum(TARGETS.values()) + LOSSES, line
    assert runs["beat"] >= 0.6 * RUN_FOR / PERIOD and runs["beat2"] >= 0.6 * RUN_FOR / PERIOD, line


def _runs(stack, name: str) -> int:
    text = (stack.logs / f"{name}.log").read_text(errors="replace")
    return text.count("Sending due task maintain-pool")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
