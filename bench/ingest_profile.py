"""Where a webhook's CPU goes: a CPU-time sampling profile of the receiver's accepted path.

The same webhooks as `bench.ingest_handler` (signed sha256 form posts, each with a new
messageId, through WSGI in-process, against a private Redis with append-only persistence),
sampled by the process's CPU clock (`ITIMER_PROF`, so waiting on Redis is not counted and
nothing is added to each call as a deterministic profiler would). Prints each function's share
of the samples, inclusive and by itself, and that share of the measured CPU per request.

    .venv/bin/python -m bench.ingest_profile [--requests 3000] [--rounds 3] [--top 60]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_PREFIXES = ("/site-packages/", "/python3.11/", f"{ROOT}/")


def _name(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    for prefix in _PREFIXES:
        if prefix in path:
            path = path.split(prefix, 1)[1]
            break
    return f"{path}:{frame.f_code.co_name}"


class _Sampler:
    """Counts, at each CPU-clock tick, the function running and every function on its stack."""

    def __init__(self) -> None:
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.own: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def __call__(self, _signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        seen: set[str] = set()
        if frame is not None:
            self.own[_name(frame)] += 1
        while frame is not None:
            name = _name(frame)
            if name not in seen:  # a recursive function counts once per sample
                self.inclusive[name] += 1
                seen.add(name)
            frame = frame.f_back


def profile(requests: int, rounds: int) -> tuple[_Sampler, float]:
    """The sampler after `rounds` x `requests` accepted webhooks, and CPU microseconds each."""
    from bench.ingest_handler import SECRET, inbound_environs
    from devtools.redis_server import RedisServer
    from shared.settings import Settings
    from web.app import create_app

    sampler = _Sampler()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSPROXY_", "VONAGE_"))}
        env.update({
            "REDIS_URL": server.url, "VONAGE_SIGNATURE_SECRET": SECRET,
            "VONAGE_SIGNATURE_METHOD": "sha256",
            "SMSPROXY_API_TOKENS": "bench-0123456789abcdef0123456789abcdef",
            "SMSPROXY_LOG_LEVEL": "WARNING",
        })
        app = create_app(Settings.from_env(env)).wsgi_app

        statuses: list[str] = []

        def start_response(status: str, _headers: list[tuple[str, str]],
                           _exc_info: Any = None) -> Any:
            statuses.append(status)
            return lambda _data: None

        cpu = 0.0
        warm = 200
        signal.signal(signal.SIGPROF, sampler)
        for r in range(rounds):
            first = r * (requests + warm)
            environs = inbound_environs(range(first, first + requests + warm), "profile")
            for each in environs[:warm]:
                b"".join(app(each, start_response))
            started = time.thread_time()
            signal.setitimer(signal.ITIMER_PROF, 0.0002, 0.0002)
            for each in environs[warm:]:
                b"".join(app(each, start_response))
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            cpu += time.thread_time() - started
        refused = sum(1 for s in statuses if not s.startswith("2"))
        if refused:
            raise RuntimeError(f"{refused} answers were not 2xx")
    return sampler, cpu / (requests * rounds) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=60)
    options = parser.parse_args(argv)
    sampler, per_request = profile(options.requests, options.rounds)
    total = max(1, sampler.samples)
    print(f"accepted webhooks, CPU {per_request:.1f} us per request (sampling included), "
          f"{sampler.samples} samples")
    for title, counts in (("inclusive", sampler.inclusive), ("by itself", sampler.own)):
        print(f"{title}: share of samples, us per request")
        for name, count in counts.most_common(options.top):
            print(f"  {count / total * 100:5.1f} % {count / total * per_request:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
