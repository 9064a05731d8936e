"""Pool maintenance: adopt owned numbers, repair their inbound URL, buy up to each target."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from shared.keys import Keys
from shared.metrics import Counters
from shared.phone import mask
from shared.store import ConversationStore
from shared.vonage_gateway import VonageFailure, VonagePort

log = logging.getLogger(__name__)

# Longer than one maintenance run can take; a crashed holder frees the lock by expiry.
LOCK_TIMEOUT_SECONDS = 300


@dataclass(slots=True)
class PoolReport:
    """What one maintenance run did."""

    ran: bool = True
    adopted: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    bought: list[str] = field(default_factory=list)
    shortfall: dict[str, int] = field(default_factory=dict)


class PoolKeeper:
    """Keeps the pool in step with the account; only one keeper acts at a time (a Redis lock)."""

    def __init__(
        self,
        client: redis.Redis,
        store: ConversationStore,
        counters: Counters,
        keys: Keys | None = None,
    ) -> None:
        self._redis = client
        self._store = store
        self._counters = counters
        self._keys = keys or Keys()

    def maintain(
        self, vonage: VonagePort, targets: Mapping[str, int], inbound_url: str | None
    ) -> PoolReport:
        lock = self._redis.lock(
            self._keys.lock("pool"), timeout=LOCK_TIMEOUT_SECONDS, blocking=False
        )
        if not lock.acquire():
            log.info("pool maintenance already running elsewhere; skipped")
            return PoolReport(ran=False)
        try:
            return self._maintain(vonage, targets, inbound_url)
        finally:
            lock.release()

    def buy_one(
        self, vonage: VonagePort, country: str, inbound_url: str | None, seen_size: int
    ) -> bool:
        """Buy one number for a country now, because a create found `seen_size` numbers short.

        One buyer per country at a time; a waiter whose pool grew meanwhile buys nothing and
        just tries the new number, so a burst of creates does not buy a number each.
        """
        lock = self._redis.lock(self._keys.lock(f"buy:{country}"), timeout=60, blocking_timeout=30)
        if not lock.acquire():
            return False
        try:
            if self._store.pool_size(country) > seen_size:
                return True
            report = PoolReport()
            self._buy(vonage, country, 1, inbound_url, report)
            self._counters.incr("smsproxy.pool.bought", len(report.bought))
            return bool(report.bought)
        finally:
            lock.release()

    def _maintain(
        self, vonage: VonagePort, targets: Mapping[str, int], inbound_url: str | None
    ) -> PoolReport:
        report = PoolReport()
        # Read the whole inventory before changing anything: a failed page stops the run here.
        owned = vonage.owned_numbers()
        for number in owned:
            if self._store.add_pool_number(number.msisdn, number.country):
                report.adopted.append(number.msisdn)
            if inbound_url and number.inbound_url != inbound_url:
                vonage.set_inbound_url(number.country, number.msisdn, inbound_url)
                report.repaired.append(number.msisdn)
        for country, target in sorted(targets.items()):
            missing = target - self._store.pool_size(country)
            if missing > 0:
                self._buy(vonage, country, missing, inbound_url, report)
        self._counters.incr("smsproxy.pool.bought", len(report.bought))
        log.info(
            "pool maintained: adopted %d, repaired %d, bought %d, short %s",
            len(report.adopted), len(report.repaired), len(report.bought), report.shortfall or "-",
        )
        return report

    def _buy(
        self,
        vonage: VonagePort,
        country: str,
        missing: int,
        inbound_url: str | None,
        report: PoolReport,
    ) -> None:
        for candidate in vonage.search_numbers(country, size=missing * 2):
            if missing == 0:
                break
            try:
                vonage.buy_number(candidate.country, candidate.msisdn)
            except VonageFailure as failure:
                # 420: someone else took it between search and buy; try the next one.
                log.info("could not buy %s: %s", mask(candidate.msisdn), failure.code)
                if failure.code in {"http401", "http403"}:
                    raise
                continue
            if inbound_url:
                vonage.set_inbound_url(candidate.country, candidate.msisdn, inbound_url)
            self._store.add_pool_number(
                candidate.msisdn, candidate.country, monthly_cost=candidate.monthly_cost
            )
            report.bought.append(candidate.msisdn)
            missing -= 1
        if missing:
            report.shortfall[country] = missing
