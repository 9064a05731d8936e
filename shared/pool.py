"""Pool maintenance: reconcile with the accounts, repair inbound URLs, buy to targets, release.

With several Vonage accounts (SMSPROXY_VONAGE_ACCOUNTS) the targets are for the pool as a
whole: every account's numbers are read and reconciled, and each number bought goes to the
account with the most headroom, the one holding the fewest pool numbers (ties: the first
listed), so that the sends, which go out through the account of their number, spread over the
accounts' separate rate limits.

One run reads the whole inventory before changing anything, so that a failed or partial answer
stops the run with nothing half-done; the next run starts clean. Only one keeper acts at a time
(a Redis lock), so two schedulers can never buy the same shortfall twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import redis

from shared import outbound
from shared.conversation_store import ConversationStore
from shared.domain import Conversation, ConversationStatus
from shared.keys import Keys
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.phone import mask
from shared.pool_inventory import PoolInventory, PoolNumber
from shared.routes import RouteTable
from shared.settings import Settings
from shared.vonage_gateway import (
    AvailableNumber,
    OwnedNumber,
    VonageFailure,
    Vonages,
    port_of,
)

log = logging.getLogger(__name__)

# Longer than one maintenance run can take; a crashed holder frees the lock by expiry.
LOCK_TIMEOUT_SECONDS = 300
AUTH_FAILURES = frozenset({"http401", "http403"})


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """What the operator asked for, from settings."""

    targets: Mapping[str, int]
    maximums: Mapping[str, int]
    monthly_budget: float
    adopt: bool
    release: bool
    inbound_url: str | None
    number_change_template: str
    # the API keys of the accounts, primary first; ("",) when none is configured (tests)
    accounts: tuple[str, ...] = ("",)

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolPolicy:
        return cls(
            targets=settings.pool_targets,
            maximums=settings.pool_maximums,
            monthly_budget=settings.pool_monthly_budget,
            adopt=settings.pool_adopt,
            release=settings.pool_release,
            inbound_url=settings.inbound_url,
            number_change_template=settings.number_change_template,
            accounts=settings.vonage_accounts.keys or ("",),
        )

    def account_of(self, number: PoolNumber) -> str:
        """The account a pool number belongs to: recorded, else the primary."""
        return number.account or self.accounts[0]

    def wanted(self, country: str) -> int:
        """The target, never above the country's maximum."""
        target = self.targets.get(country, 0)
        return min(target, self.maximums.get(country, target))


@dataclass(slots=True)
class PoolReport:
    """What one maintenance run did; `sends` are number-change SMS to enqueue."""

    ran: bool = True
    adopted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    bought: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    shortfall: dict[str, int] = field(default_factory=dict)
    sends: list[str] = field(default_factory=list)


class PoolKeeper:
    """Keeps the pool in step with the account and the policy."""

    def __init__(
        self,
        client: redis.Redis,
        conversations: ConversationStore,
        routes: RouteTable,
        inventory: PoolInventory,
        messages: MessageLog,
        counters: Counters,
        policy: PoolPolicy,
        keys: Keys | None = None,
    ) -> None:
        self._redis = client
        self._conversations = conversations
        self._routes = routes
        self._inventory = inventory
        self._messages = messages
        self._counters = counters
        self._policy = policy
        self._keys = keys or Keys()

    def maintain(self, vonage: Vonages) -> PoolReport:
        """One run over every account: `vonage` is one port per account, or one for all."""
        lock = self._redis.lock(
            self._keys.lock("pool"), timeout=LOCK_TIMEOUT_SECONDS, blocking=False
        )
        if not lock.acquire():
            log.info("pool maintenance already running elsewhere; skipped")
            return PoolReport(ran=False)
        try:
            return self._maintain(vonage, self._policy)
        except VonageFailure as failure:
            self._counters.incr("smsproxy.pool.maintenance_failed")
            if failure.code in AUTH_FAILURES:
                self._counters.incr("smsproxy.pool.auth_failed")
                log.error("pool maintenance stopped: Vonage refused the credentials (%s)",
                          failure.code)
            else:
                log.warning("pool maintenance stopped: %s %s", failure.code, failure.reason)
            raise
        finally:
            lock.release()

    def _maintain(self, vonage: Vonages, policy: PoolPolicy) -> PoolReport:
        report = PoolReport()
        # every account is read before anything changes: a failed read stops the whole run
        owned: dict[str, tuple[str, OwnedNumber]] = {}
        for account in policy.accounts:
            for number in port_of(vonage, account).owned_numbers():
                owned[number.msisdn] = (account, number)
        self._reconcile(vonage, owned, policy, report)
        for country in sorted(set(policy.targets) | set(self._inventory.countries())):
            missing = policy.wanted(country) - self._inventory.size(country)
            if missing > 0:
                self._buy(vonage, country, missing, policy, report)
            elif missing < 0 and policy.release:
                self._drain_surplus(country, -missing, report)
        if policy.release:
            self._cancel_drained(vonage, report)
        self._counters.incr("smsproxy.pool.bought", len(report.bought))
        log.info(
            "pool maintained: adopted %d, lost %d, repaired %d, bought %d, drained %d, "
            "cancelled %d, short %s",
            len(report.adopted), len(report.lost), len(report.repaired), len(report.bought),
            len(report.drained), len(report.cancelled), report.shortfall or "-",
        )
        return report

    def _reconcile(
        self,
        vonage: Vonages,
        owned: Mapping[str, tuple[str, OwnedNumber]],
        policy: PoolPolicy,
        report: PoolReport,
    ) -> None:
        """`owned`: every number of every account, with the API key of its account."""
        known = {n.msisdn: n for n in self._inventory.numbers()}
        for msisdn in sorted(set(known) - set(owned)):
            self._fail_over(msisdn, known[msisdn].country, policy, report)
        for account, number in owned.values():
            if number.msisdn not in known:
                # A number pointing at us is ours (e.g. the store was rebuilt); others only
                # when the operator allows adopting numbers bought outside the proxy.
                ours = policy.inbound_url is not None and number.inbound_url == policy.inbound_url
                if not (ours or policy.adopt):
                    continue
                self._inventory.add(number.msisdn, number.country, account=account or None)
                report.adopted.append(number.msisdn)
            elif account and known[number.msisdn].account != account:
                # recorded before accounts were, or moved between accounts: sends follow it
                self._inventory.set_account(number.msisdn, account)
            if policy.inbound_url and number.inbound_url != policy.inbound_url:
                port_of(vonage, account).set_inbound_url(
                    number.country, number.msisdn, policy.inbound_url)
                report.repaired.append(number.msisdn)

    def _fail_over(
        self, lost: str, country: str, policy: PoolPolicy, report: PoolReport
    ) -> None:
        """The account no longer owns `lost`: move its live routes, tell the people affected."""
        self._inventory.drain(lost)
        for conversation in self._conversations.live_conversations():
            for index, participant in enumerate(conversation.participants):
                if participant.proxy_number != lost:
                    continue
                countries = [participant.country or country, *self._inventory.countries()]
                moved = self._routes.reroute(conversation.id, participant.number, lost, countries)
                if moved is None:
                    self._conversations.finish(
                        conversation.id, ConversationStatus.FAILED, "number_lost"
                    )
                    self._counters.incr("smsproxy.pool.conversations_lost")
                    continue
                self._conversations.transition(conversation.id, _proxy_changer(index, moved))
                message = outbound.number_change(
                    conversation, index, lost, moved, policy.number_change_template
                )
                self._messages.owe(message)
                report.sends.append(message.id)
                self._counters.incr("smsproxy.pool.rerouted")
        self._inventory.forget(lost)
        report.lost.append(lost)
        self._counters.incr("smsproxy.pool.lost")
        log.warning("number %s is no longer owned; its routes were moved", mask(lost))

    def buy_one(self, vonage: Vonages, country: str, seen_size: int) -> bool:
        """Buy one number for a country now, because a create found `seen_size` numbers short.

        One buyer per country at a time; a waiter whose pool grew meanwhile buys nothing and
        just tries the new number, so a burst of creates does not buy a number each.
        """
        lock = self._redis.lock(self._keys.lock(f"buy:{country}"), timeout=60, blocking_timeout=30)
        if not lock.acquire():
            return False
        try:
            if self._inventory.size(country) > seen_size:
                return True
            maximum = self._policy.maximums.get(country)
            if maximum is None and not self._policy.monthly_budget:
                # No ceiling for this country: buying on demand would have no end.
                log.warning("not buying on demand for %s: it has no maximum and there is no "
                            "budget", country)
                return False
            if maximum is not None and maximum <= seen_size:
                return False
            report = PoolReport()
            self._buy(vonage, country, 1, self._policy, report)
            self._counters.incr("smsproxy.pool.bought", len(report.bought))
            return bool(report.bought)
        finally:
            lock.release()

    def drain(self, msisdn: str) -> bool:
        """An operator's drain: no new conversations on this number, its live ones carry on.

        False when it is not a number the pool holds, or is draining already. Maintenance
        then buys to the target as for any other shortfall, and cancels the number once idle
        only when SMSPROXY_POOL_RELEASE allows releasing.
        """
        if not any(n.msisdn == msisdn and n.state == "active"
                   for n in self._inventory.numbers()):
            return False
        self._inventory.drain(msisdn)
        self._counters.incr("smsproxy.pool.drained")
        log.info("number %s drained by an operator", mask(msisdn))
        return True

    def _monthly_spend(self) -> float:
        return sum(_cost(number.monthly_cost) for number in self._inventory.numbers())

    def _buy(
        self,
        vonage: Vonages,
        country: str,
        missing: int,
        policy: PoolPolicy,
        report: PoolReport,
    ) -> None:
        """Buy `missing` numbers for a country, each on the account with the most headroom."""
        spend = self._monthly_spend()
        held = {account: 0 for account in policy.accounts}
        for number in self._inventory.numbers():
            account = policy.account_of(number)
            if account in held:
                held[account] += 1
        offers: dict[str, list[AvailableNumber]] = {}
        while missing > 0:
            open_accounts = [a for a in policy.accounts if a not in offers or offers[a]]
            if not open_accounts:
                break  # no account has a number to offer
            account = min(open_accounts, key=lambda a: (held[a], policy.accounts.index(a)))
            port = port_of(vonage, account)
            if account not in offers:
                offers[account] = port.search_numbers(country, size=missing * 2 + 2)
                continue
            candidate = offers[account].pop(0)
            cost = _cost(candidate.monthly_cost)
            if policy.monthly_budget and spend + cost > policy.monthly_budget:
                log.warning("pool budget reached: not buying more numbers for %s", country)
                self._counters.incr("smsproxy.pool.budget_reached")
                break
            try:
                port.buy_number(candidate.country, candidate.msisdn)
            except VonageFailure as failure:
                if failure.code in AUTH_FAILURES or failure.transient:
                    raise  # credentials refused, or throttled: stop, the next run retries
                # 420 and the like: someone else took it between search and buy; next one.
                log.info("could not buy %s: %s", mask(candidate.msisdn), failure.code)
                continue
            if policy.inbound_url:
                port.set_inbound_url(candidate.country, candidate.msisdn, policy.inbound_url)
            self._inventory.add(
                candidate.msisdn, candidate.country, monthly_cost=candidate.monthly_cost,
                account=account or None,
            )
            report.bought.append(candidate.msisdn)
            held[account] += 1
            spend += cost
            missing -= 1
        if missing:
            report.shortfall[country] = missing
            self._counters.incr("smsproxy.pool.shortfall", missing)

    def _drain_surplus(self, country: str, surplus: int, report: PoolReport) -> None:
        """Stop allocating on the least-used numbers above the target."""
        active = [n for n in self._inventory.numbers(country) if n.state == "active"]
        for number in sorted(active, key=lambda n: (n.routes, n.msisdn))[:surplus]:
            self._inventory.drain(number.msisdn)
            report.drained.append(number.msisdn)

    def _cancel_drained(self, vonage: Vonages, report: PoolReport) -> None:
        """Cancel drained numbers once no live route uses them; never one with a live route."""
        for number in self._inventory.numbers():
            if number.state != "draining" or number.routes > 0:
                continue
            port_of(vonage, self._policy.account_of(number)).cancel_number(
                number.country, number.msisdn)
            self._inventory.forget(number.msisdn)
            report.cancelled.append(number.msisdn)
            self._counters.incr("smsproxy.pool.cancelled")


def _cost(raw: str | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0


def _proxy_changer(index: int, proxy: str) -> Callable[[Conversation], Conversation | None]:
    """A transition giving participant `index` a new proxy number."""

    def change(conversation: Conversation) -> Conversation | None:
        if not conversation.status.is_live:
            return None
        people = list(conversation.participants)
        people[index] = replace(people[index], proxy_number=proxy)
        return conversation.with_status(
            conversation.status, participants=(people[0], people[1])
        )

    return change
