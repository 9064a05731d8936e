"""`python -m bench` (or `make bench`): every benchmark, one after the other, each against its
own baseline measured in the same run. `--quick` runs smaller sizes (minutes instead of ~15)."""

from __future__ import annotations

import argparse
import sys
import time

from bench import (
    accounts,
    create_active,
    ingest_handler,
    masking_accuracy,
    memory,
    numbers_needed,
    relay_e2e,
    route_lookup,
    scale_out,
    webhook_ingest,
)

FULL: list[tuple[str, object, list[str]]] = [
    ("1. webhook ingest", webhook_ingest, []),
    ("1b. webhook handler CPU", ingest_handler, []),
    ("2. end-to-end relay", relay_e2e, []),
    ("3. route lookup at scale", route_lookup, []),
    ("4. memory per conversation", memory, []),
    ("5. numbers needed", numbers_needed, []),
    ("6. masking accuracy", masking_accuracy, []),
    ("7. several Vonage accounts", accounts, []),
    ("8. scale-out", scale_out, []),
    ("9. create -> active", create_active, []),
]
QUICK = {
    "1. webhook ingest": ["--seconds", "4", "--rounds", "1"],
    "1b. webhook handler CPU": ["--requests", "1000", "--rounds", "2"],
    "2. end-to-end relay": ["--messages", "200", "--conversations", "20"],
    "3. route lookup at scale": ["--large", "100000"],
    "4. memory per conversation": ["--conversations", "10000"],
    "5. numbers needed": [],
    "6. masking accuracy": [],
    "7. several Vonage accounts": ["--messages", "150"],
    "8. scale-out": ["--per-process", "40", "--rate-messages", "40", "--web-seconds", "3"],
    "9. create -> active": ["--creates", "60", "--rounds", "1"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="run the benchmarks whose title contains this")
    options = parser.parse_args()
    failures = 0
    for title, module, args in FULL:
        if options.only and options.only not in title:
            continue
        print(f"\n=== {title} ===", flush=True)
        started = time.monotonic()
        code = module.main(QUICK[title] if options.quick else args)  # type: ignore[attr-defined]
        print(f"({time.monotonic() - started:.0f} s)", flush=True)
        failures += int(bool(code))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
