"""Test doubles for the ports the product defines (never for a part we ship end to end)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from shared.domain import MessageKind, OutboundSms
from shared.jobs import TaskName
from shared.messages import MessageLog
from shared.phone import country_of
from shared.vonage_gateway import (
    AvailableNumber,
    NumberInsight,
    OwnedNumber,
    SentSms,
    VonageFailure,
    sms_parts,
)
from web.queue import QueueUnavailable


@dataclass
class FakePublisher:
    """Records what web/ enqueues."""

    published: list[tuple[TaskName, Any]] = field(default_factory=list)
    atomic_webhooks = False  # the web tests exercise the two-step path; see tests/integration
    broker_is_store = False

    def publish(self, task: TaskName, payload: Any, *, job: str | None = None) -> None:
        self.published.append((task, payload))

    def ping(self) -> bool:
        return True

    def queue_depths(self) -> dict[str, int] | None:
        return None  # a Redis broker: the gauges read its lists


class BadPublisher:
    """A broker that is down."""

    atomic_webhooks = False
    broker_is_store = False

    def publish(self, task: TaskName, payload: Any, *, job: str | None = None) -> None:
        raise QueueUnavailable(task.value)

    def ping(self) -> bool:
        return False

    def queue_depths(self) -> dict[str, int] | None:
        return None


@dataclass
class FakeVonage:
    """An in-memory VonagePort for unit tests of shared/ logic."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[VonageFailure] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)
    owned: list[OwnedNumber] = field(default_factory=list)
    available: list[AvailableNumber] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # taken by someone else between search and buy
    numbers_failure: VonageFailure | None = None  # every Numbers call fails with this

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback: str | None
    ) -> SentSms:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append({"from": sender, "to": recipient, "text": text, "client_ref": client_ref})
        # one id per part, as Vonage answers
        return SentSms(message_ids=[f"v{len(self.sent)}" + (f"-{i}" if i else "")
                                    for i in range(sms_parts(text))])

    def basic_insight(self, msisdn: str) -> NumberInsight:
        if msisdn in self.invalid:
            raise VonageFailure("3", "invalid number", transient=False)
        return NumberInsight(msisdn=msisdn, country=country_of(msisdn) or "ZZ")

    def owned_numbers(self) -> list[OwnedNumber]:
        if self.numbers_failure:
            raise self.numbers_failure
        return list(self.owned)

    def search_numbers(self, country: str, size: int) -> list[AvailableNumber]:
        return [n for n in self.available if n.country == country][:size]

    def buy_number(self, country: str, msisdn: str) -> None:
        chosen = next((n for n in self.available if n.msisdn == msisdn), None)
        if msisdn in self.gone or chosen is None:  # Vonage: 420, method failed
            raise VonageFailure("http420", "HTTP 420", transient=False)
        self.available.remove(chosen)
        self.owned.append(OwnedNumber(msisdn, country, None))

    def set_inbound_url(self, country: str, msisdn: str, url: str) -> None:
        self.owned = [
            OwnedNumber(n.msisdn, n.country, url) if n.msisdn == msisdn else n for n in self.owned
        ]

    def cancel_number(self, country: str, msisdn: str) -> None:
        self.owned = [n for n in self.owned if n.msisdn != msisdn]
        self.cancelled.append(msisdn)


@dataclass
class FakeQueue:
    """A workers.runtime.TaskQueue that records what tasks enqueue, in order, as
    `(task, args, kwargs, countdown)`, and the outbox job each named (`jobs`)."""

    enqueued: list[tuple[TaskName, tuple[Any, ...], dict[str, Any], float | None]] = field(
        default_factory=list
    )
    jobs: list[str | None] = field(default_factory=list)

    def enqueue(
        self,
        task: TaskName,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        job: str | None = None,
    ) -> None:
        self.enqueued.append((task, tuple(args), dict(kwargs or {}), countdown))
        self.jobs.append(job)

    def of(self, task: TaskName) -> list[tuple[tuple[Any, ...], dict[str, Any], float | None]]:
        """The `(args, kwargs, countdown)` of what was enqueued for `task`."""
        return [(a, k, c) for t, a, k, c in self.enqueued if t is task]


@dataclass
class FlakyInsightVonage(FakeVonage):
    """A FakeVonage whose next `insight_failures` Number Insight lookups fail transiently."""

    insight_failures: int = 0
    insight_calls: int = 0

    def basic_insight(self, msisdn: str) -> NumberInsight:
        self.insight_calls += 1
        if self.insight_failures:
            self.insight_failures -= 1
            raise VonageFailure("1", "throttled", transient=True)
        return super().basic_insight(msisdn)


def sent_relay(client: redis.Redis, outbound_id: str, vonage_ids: list[str]) -> MessageLog:
    """A relay Vonage took (as the worker records it), awaiting its receipts."""
    messages = MessageLog(client)
    messages.owe(OutboundSms(outbound_id, "c" * 32, MessageKind.RELAY, "447400123456",
                             "447700900100", "hello", created_at=time.time()))
    assert messages.claim_send(outbound_id, 60).acquired
    messages.mark_submitted(outbound_id, vonage_ids, retain_body=False)
    return messages
