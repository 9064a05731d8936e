"""Added latency: what the proxy adds between a webhook and Vonage accepting its relay, at a
steady open-loop rate, with 150 ms of provider latency and one worker process.

The whole stack runs as in production (gunicorn, one Celery worker with the product's settings,
Redis with append-only persistence, the sandbox over HTTPS with keep-alive, the rate limits out
of the way). A poster plays Vonage at a fixed rate, whatever the proxy does (open loop: a slow
proxy does not slow the arrivals down), and notes when it posted each webhook. The sandbox
records when it accepted each send, after its injected latency; both clocks are this machine's.

    added = (sandbox accepted the send) - (poster posted the webhook) - provider latency

The provider's own latency is the injected 150 ms plus what the sandbox itself takes for a send
over a warm connection: that floor is measured in the same run by direct SDK sends from this
process (`provider floor`), and is reported beside the added figures as their ratio's baseline.
Last, the stack idles `--idle` seconds (600 in the real run; the sandbox closes keep-alive
connections after 30 s idle, as servers do) and one message measures the cold path.

    .venv/bin/python -m bench.added_latency [--rates 10,50,100] [--seconds 60] [--idle 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from bench.common import open_conversations
from devtools.stack import Stack, StackConfig
from shared.settings import Settings, SignatureMethod
from shared.signatures import sign
from shared.vonage_gateway import VonageGateway

LATENCY_MS = 150
GOAL_P99_MS = 50.0
GOAL_RATE = 50
# posting threads: enough that a webhook held up in web never delays the next arrival
POSTERS = 16


class OpenLoopPoster:
    """Signed inbound webhooks at a fixed rate, each posted on its own schedule by a pool of
    threads (one HTTP session each); notes when each was posted and how late it was."""

    def __init__(self, stack: Stack) -> None:
        self._url = f"{stack.web_url}/webhooks/inbound-sms"
        self._secret = stack.config.signature_secret or ""
        self._method = SignatureMethod(stack.config.signature_method)
        self._local = threading.local()
        self.posted_at: dict[str, float] = {}
        self.acknowledged: set[str] = set()
        self.lag: list[float] = []
        self.failed = 0

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post(self, sender: str, proxy: str, message_id: str, due: float | None = None) -> None:
        params = {"msisdn": sender, "to": proxy, "messageId": message_id, "text": "hi there",
                  "type": "text", "timestamp": str(int(time.time())), "nonce": message_id}
        params["sig"] = sign(params, self._secret, self._method)
        now = time.time()
        if due is not None:
            self.lag.append(now - due)
        self.posted_at[message_id] = now
        try:
            self._session().post(self._url, data=params, timeout=10).raise_for_status()
        except requests.RequestException:
            # not acknowledged: Vonage would post it again; this poster does not, and counts it
            self.failed += 1
        else:
            self.acknowledged.add(message_id)

    def steady(self, rate: float, seconds: float, pairs: Sequence[tuple[str, str]],
               prefix: str) -> list[str]:
        """Post `rate` webhooks a second for `seconds`; returns their message ids."""
        count = int(rate * seconds)
        ids = [f"{prefix}-{n}" for n in range(count)]
        start = time.time() + 0.2
        with ThreadPoolExecutor(POSTERS) as pool:
            for n, message_id in enumerate(ids):
                due = start + n / rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                sender, proxy = pairs[n % len(pairs)]
                pool.submit(self.post, sender, proxy, message_id, due)
        return ids


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def wait_for_sends(stack: Stack, ids: Sequence[str], timeout: float) -> dict[str, float]:
    """When the sandbox accepted each relay of `ids`, waiting until all are there (or timeout)."""
    sandbox = stack.sandbox
    assert sandbox is not None
    wanted = {f"relay-{i}" for i in ids}
    deadline = time.monotonic() + timeout
    accepted: dict[str, float] = {}
    while True:
        accepted = {s["client_ref"][len("relay-"):]: _ts(s["sent_at"])
                    for s in sandbox.client.sms_log() if s.get("client_ref") in wanted}
        if len(accepted) >= len(wanted) or time.monotonic() > deadline:
            return accepted
        time.sleep(0.5)


def provider_floor(stack: Stack, sender: str, recipient: str, samples: int) -> list[float]:
    """Direct SDK sends from this process: (accepted - started) minus the injected latency, in
    seconds: what the provider itself takes beyond its 150 ms. The first opens the connection
    (a TLS handshake), the others reuse it."""
    sandbox = stack.sandbox
    assert sandbox is not None
    gateway = VonageGateway(Settings.from_env(stack.env))
    refs = [f"floor-{n}" for n in range(samples + 1)]
    started: dict[str, float] = {}
    for ref in refs:
        started[ref] = time.time()
        gateway.send_sms(sender=sender, recipient=recipient, text="floor", client_ref=ref,
                         callback=None)
    log = {s["client_ref"]: _ts(s["sent_at"]) for s in sandbox.client.sms_log()
           if str(s.get("client_ref", "")).startswith("floor-")}
    return [log[r] - started[r] - LATENCY_MS / 1000 for r in refs if r in log]


class FloorProbe:
    """Direct SDK sends from this process, one at a time on one warm connection, for as long as
    a rate runs: the provider's own latency beyond its 150 ms under the same machine noise (its
    p99 shows what the machine alone does to a tail)."""

    def __init__(self, stack: Stack, sender: str, recipient: str) -> None:
        self._gateway = VonageGateway(Settings.from_env(stack.env))
        self._stack = stack
        self._sender, self._recipient = sender, recipient
        self._started: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0

    def __enter__(self) -> FloorProbe:
        self._started.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            ref = f"probe-{self._count}"
            self._count += 1
            self._started[ref] = time.time()
            self._gateway.send_sms(sender=self._sender, recipient=self._recipient,
                                   text="probe", client_ref=ref, callback=None)

    def extra_ms(self) -> list[float]:
        """Each probe send's milliseconds beyond the injected latency."""
        sandbox = self._stack.sandbox
        assert sandbox is not None
        log = {s["client_ref"]: _ts(s["sent_at"]) for s in sandbox.client.sms_log()
               if s.get("client_ref") in self._started}
        return [(log[r] - t) * 1000 - LATENCY_MS for r, t in self._started.items() if r in log]


def _one(stack: Stack, poster: OpenLoopPoster, pair: tuple[str, str], message_id: str) -> float:
    """One message on its own: its added milliseconds (NaN if its send never came)."""
    poster.post(*pair, message_id)
    accepted = wait_for_sends(stack, [message_id], 60)
    if message_id not in accepted:
        return float("nan")
    return (accepted[message_id] - poster.posted_at[message_id]) * 1000 - LATENCY_MS


def measure(rates: Sequence[int], seconds: float, idle: float, conversations: int,
            worker_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
            cold_samples: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(
            state_dir=Path(tmp), pool_targets="GB=3", worker_args=worker_args,
            sandbox_options={"latency_ms": LATENCY_MS},
            extra_env={"SMSPROXY_SEND_RATE_PER_SECOND": "0",
                       "SMSPROXY_CONVERSATION_RELAY_RATE_PER_MINUTE": "0",
                       "SMSPROXY_CONVERSATION_DAILY_RELAYS": "0",
                       # the setup polls each new conversation until it is active
                       "SMSPROXY_API_RATE_LIMIT": "1000/second;100000/minute",
                       **(extra_env or {})},
        )
        with Stack(config) as stack:
            sandbox = stack.sandbox
            assert sandbox is not None
            pairs = open_conversations(stack, conversations)
            sandbox.client.set_faults(latency_ms=LATENCY_MS)
            poster = OpenLoopPoster(stack)
            # warm-up: every worker thread's first send opens its connection
            warm = poster.steady(20, 2, pairs, "warm")
            wait_for_sends(stack, warm, 60)
            floor = provider_floor(stack, pairs[0][1], "447400000001", 20)
            figures: dict[str, Any] = {"floor_ms": statistics.median(floor[1:]) * 1000,
                                       "floor_new_connection_ms": floor[0] * 1000,
                                       "rates": {}}
            probe = FloorProbe(stack, pairs[0][1], "447400000002")
            for rate in rates:
                poster.lag.clear()
                failed_before = poster.failed
                with probe:
                    ids = poster.steady(rate, seconds, pairs, f"r{rate}")
                floor_now = probe.extra_ms()
                accepted = wait_for_sends(stack, ids, 120 + seconds)
                added = [(accepted[i] - poster.posted_at[i]) * 1000 - LATENCY_MS
                         for i in ids if i in accepted]
                figures["rates"][rate] = {
                    "messages": len(ids), "sent": len(added),
                    # acknowledged by web and never sent: what the proxy must never do
                    "lost": sum(1 for i in ids if i in poster.acknowledged and i not in accepted),
                    "failed_posts": poster.failed - failed_before,
                    "p50_ms": _percentile(added, 0.5), "p99_ms": _percentile(added, 0.99),
                    "max_ms": max(added, default=float("nan")),
                    "lag_p99_ms": _percentile(poster.lag, 0.99) * 1000,
                    "floor_p50_ms": _percentile(floor_now, 0.5),
                    "floor_p99_ms": _percentile(floor_now, 0.99), "floor_n": len(floor_now),
                }
                time.sleep(1)
            cold, after = [], []
            for n in range(cold_samples if idle > 0 else 0):
                time.sleep(idle)
                cold.append(_one(stack, poster, pairs[n % len(pairs)], f"cold-{n}"))
                time.sleep(0.5)  # and the next one, warm again, for comparison
                after.append(_one(stack, poster, pairs[n % len(pairs)], f"after-cold-{n}"))
            if cold:
                figures.update(idle_s=idle, cold_ms=statistics.median(cold), cold_all=cold,
                               after_cold_ms=statistics.median(after))
    return figures


def report(f: dict[str, Any], seconds: float) -> None:
    print(f"added latency: webhook posted -> Vonage accepted the send, minus the provider's "
          f"{LATENCY_MS} ms; open loop, {seconds:g} s per rate, one worker process")
    floor = f["floor_ms"]
    print(f"  provider floor (direct SDK sends beyond {LATENCY_MS} ms): warm p50 {floor:.1f} ms, "
          f"on a new connection {f['floor_new_connection_ms']:.1f} ms")
    for rate, r in f["rates"].items():
        goal = f"  (goal p99 <= {GOAL_P99_MS:.0f} ms)" if rate == GOAL_RATE else ""
        print(f"  {rate:4d} messages/s: added p50 {r['p50_ms']:6.1f} ms, "
              f"p99 {r['p99_ms']:6.1f} ms, "
              f"max {r['max_ms']:6.0f} ms; ratio p99 / provider latency "
              f"{(r['p99_ms'] + LATENCY_MS) / (LATENCY_MS + floor):.2f}; "
              f"sent {r['sent']}/{r['messages']}, acknowledged and lost {r['lost']}, "
              f"posts not acknowledged {r['failed_posts']}{goal}")
        print(f"        same time, direct sends (the floor): p50 {r['floor_p50_ms']:6.1f} ms, "
              f"p99 {r['floor_p99_ms']:6.1f} ms ({r['floor_n']} sends); poster lag p99 "
              f"{r['lag_p99_ms']:.1f} ms (machine noise)")
    if "cold_ms" in f:
        print(f"  first message after {f['idle_s']:g} s idle: added {f['cold_ms']:6.1f} ms "
              f"(median of {len(f['cold_all'])}: "
              + ", ".join(f"{x:.0f}" for x in f["cold_all"])
              + f"); the next one {f['after_cold_ms']:6.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default="10,50,100", help="messages/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=600.0,
                        help="idle seconds before the cold message (0: skip)")
    parser.add_argument("--cold-samples", type=int, default=1,
                        help="how many times to idle and send one message")
    parser.add_argument("--conversations", type=int, default=30)
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="extra argument to the worker, e.g. --worker-arg=--pool=gevent")
    options = parser.parse_args(argv)
    rates = [int(r) for r in options.rates.split(",") if r]
    figures = measure(rates, options.seconds, options.idle, options.conversations,
                      tuple(options.worker_arg), cold_samples=options.cold_samples)
    report(figures, options.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
