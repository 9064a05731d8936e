"""The Vonage port: a Protocol for what the proxy needs, and its adapter over the official SDK."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import redis
import requests
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_number_insight import BasicInsightRequest
from vonage_number_insight.errors import NumberInsightError
from vonage_numbers import (
    ListOwnedNumbersFilter,
    NumberParams,
    NumbersError,
    SearchAvailableNumbersFilter,
    UpdateNumberParams,
)
from vonage_numbers.enums import NumberFeatures, NumberType
from vonage_sms import PartialFailureError, SmsError, SmsMessage

from shared.accounts import VonageAccount
from shared.metrics import VONAGE_DURATION, Counters, HistogramBuffer
from shared.settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# SMS statuses worth retrying (VONAGE.md): throttled, internal error, too many binds.
TRANSIENT_SMS_STATUSES = frozenset({"1", "5", "10"})
TRANSIENT_INSIGHT_STATUSES = frozenset({1, 5})
_SMS_STATUS = re.compile(r"error code (\d+)")

# Vonage's documented limits for the optional send fields.
CLIENT_REF_MAX = 100


class VonageFailure(Exception):
    """A Vonage call that did not succeed; `transient` says whether retrying may help."""

    def __init__(self, code: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True, slots=True)
class SentSms:
    """Vonage accepted a send: one message id per part."""

    message_ids: list[str]


@dataclass(frozen=True, slots=True)
class NumberInsight:
    """What Number Insight basic says about a number."""

    msisdn: str
    country: str


@dataclass(frozen=True, slots=True)
class OwnedNumber:
    msisdn: str
    country: str
    inbound_url: str | None


@dataclass(frozen=True, slots=True)
class AvailableNumber:
    msisdn: str
    country: str
    monthly_cost: str | None


class VonagePort(Protocol):
    """Everything the proxy asks of Vonage; tests may pass another implementation."""

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback: str | None
    ) -> SentSms: ...

    def basic_insight(self, msisdn: str) -> NumberInsight: ...

    def owned_numbers(self) -> list[OwnedNumber]: ...

    def search_numbers(self, country: str, size: int) -> list[AvailableNumber]: ...

    def buy_number(self, country: str, msisdn: str) -> None: ...

    def set_inbound_url(self, country: str, msisdn: str, url: str) -> None: ...

    def cancel_number(self, country: str, msisdn: str) -> None: ...


@runtime_checkable
class AccountPorts(Protocol):
    """A VonagePort per account, by API key (several accounts: shared/accounts.py)."""

    def port(self, api_key: str) -> VonagePort: ...


# What the services take: one port (one account, or a test's double), or one per account.
Vonages = VonagePort | AccountPorts


def port_of(vonage: Vonages, api_key: str) -> VonagePort:
    """The port of the account `api_key`; a single port stands for every account."""
    if isinstance(vonage, AccountPorts):
        return vonage.port(api_key)
    return vonage


class GatewayPorts:
    """One VonageGateway per account, made when first asked for (one thread: the CLI)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ports: dict[str, VonagePort] = {}

    def port(self, api_key: str) -> VonagePort:
        found = self._ports.get(api_key)
        if found is None:
            found = VonageGateway(self._settings, self._settings.vonage_accounts.get(api_key))
            self._ports[api_key] = found
        return found


def is_gsm7(text: str) -> bool:
    """Whether text fits the GSM-7 alphabet (else it must go as `unicode`)."""
    return all(ch in _GSM7 for ch in text)


def sms_parts(text: str) -> int:
    """How many parts Vonage splits a text into (each billed, each with its own receipt).

    GSM-7: 160 septets in one part, 153 per part when concatenated, an extension character
    (^{}\\[~]|€ and form feed) taking two; anything else goes as UCS-2: 70 UTF-16 units, 67
    per part. An extension character's two septets never straddle two parts.
    """
    if is_gsm7(text):
        units = [2 if ch in _GSM7_EXTENSION else 1 for ch in text]
        single, per_part = 160, 153
    else:
        units = [len(ch.encode("utf-16-le")) // 2 for ch in text]
        single, per_part = 70, 67
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€\f"
)


class VonageGateway:
    """One SDK client of one account (the primary unless told); the SDK is not thread-safe,
    so build one per process or thread."""

    def __init__(self, settings: Settings, account: VonageAccount | None = None) -> None:
        account = account or settings.vonage_accounts.primary
        if account is None:
            raise VonageFailure("config", "VONAGE_API_KEY and VONAGE_API_SECRET (or "
                                "SMSPROXY_VONAGE_ACCOUNTS) are required", transient=False)
        # Key and secret only: the SDK's request signing is broken for SMS (VONAGE.md).
        self._client = Vonage(
            Auth(api_key=account.api_key, api_secret=account.api_secret),
            HttpClientOptions(
                api_host=settings.vonage_api_host,
                rest_host=settings.vonage_rest_host,
                timeout=settings.vonage_timeout_seconds,
                # pool_maxsize is also the SDK's count of silent POST re-sends after a dropped
                # connection; 1 means a send is never repeated behind our back.
                pool_connections=1,
                pool_maxsize=1,
                max_retries=0,
            ),
        )
        session = self._client.http_client._session
        if settings.vonage_ca_bundle:
            session.verify = settings.vonage_ca_bundle
            # With trust_env on, REQUESTS_CA_BUNDLE in the environment would win over verify.
            session.trust_env = False

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback: str | None
    ) -> SentSms:
        message = SmsMessage(
            to=recipient,
            from_=sender,
            text=text,
            type="text" if is_gsm7(text) else "unicode",
            client_ref=client_ref[:CLIENT_REF_MAX],
            callback=callback if callback and len(callback) <= 100 else None,
        )
        try:
            response = self._client.sms.send(message)
        except PartialFailureError as exc:
            # Some parts went, some did not: retrying would re-send the parts that went.
            raise VonageFailure("partial", "some parts were rejected", transient=False) from exc
        except SmsError as exc:
            code = _sms_status(exc)
            raise VonageFailure(
                code, _sms_error_text(self._client), transient=code in TRANSIENT_SMS_STATUSES
            ) from exc
        except HttpRequestError as exc:
            raise _http_failure(exc) from exc
        except requests.RequestException as exc:
            # Connection refused, reset or timed out: whether Vonage got the request is unknown
            # only for a read timeout; the claim lease bounds any duplicate to that case.
            raise VonageFailure("connection", type(exc).__name__, transient=True) from exc
        return SentSms(message_ids=[m.message_id or "" for m in response.messages])

    def basic_insight(self, msisdn: str) -> NumberInsight:
        try:
            reply = self._client.number_insight.get_basic_info(BasicInsightRequest(number=msisdn))
        except NumberInsightError as exc:
            status, message = _insight_status(self._client)
            raise VonageFailure(
                str(status), message, transient=status in TRANSIENT_INSIGHT_STATUSES
            ) from exc
        except HttpRequestError as exc:
            raise _http_failure(exc) from exc
        except requests.RequestException as exc:
            raise VonageFailure("connection", type(exc).__name__, transient=True) from exc
        except ValueError as exc:  # the SDK's own validation of the number's shape
            raise VonageFailure("3", "malformed number", transient=False) from exc
        if not reply.country_code:
            raise VonageFailure("3", "no country for number", transient=False)
        return NumberInsight(
            msisdn=reply.international_format_number or msisdn, country=reply.country_code
        )

    def owned_numbers(self) -> list[OwnedNumber]:
        """Every number the account owns, across all pages."""
        found: list[OwnedNumber] = []
        index: int | None = 1
        while index is not None:
            numbers, _count, index = self._numbers_call(
                self._client.numbers.list_owned_numbers,
                ListOwnedNumbersFilter(index=index, size=100),
            )
            for n in numbers:
                if not n.msisdn or not n.country:
                    # a partial answer must not be mistaken for "this number is gone"
                    raise VonageFailure("numbers", "owned number without msisdn or country",
                                        transient=True)
                found.append(OwnedNumber(n.msisdn, n.country, n.mo_http_url))
        return found

    def search_numbers(self, country: str, size: int) -> list[AvailableNumber]:
        numbers, _count, _next = self._numbers_call(
            self._client.numbers.search_available_numbers,
            SearchAvailableNumbersFilter(
                country=country,
                type=NumberType.MOBILE_LVN,
                features=NumberFeatures.SMS,
                size=min(size, 100),
            ),
        )
        return [
            AvailableNumber(n.msisdn, n.country or country, n.cost)
            for n in numbers
            if n.msisdn
        ]

    def buy_number(self, country: str, msisdn: str) -> None:
        self._numbers_call(
            self._client.numbers.buy_number, NumberParams(country=country, msisdn=msisdn)
        )

    def set_inbound_url(self, country: str, msisdn: str, url: str) -> None:
        self._numbers_call(
            self._client.numbers.update_number,
            UpdateNumberParams(country=country, msisdn=msisdn, mo_http_url=url),
        )

    def cancel_number(self, country: str, msisdn: str) -> None:
        self._numbers_call(
            self._client.numbers.cancel_number, NumberParams(country=country, msisdn=msisdn)
        )

    @staticmethod
    def _numbers_call(call: Any, argument: Any) -> Any:
        try:
            return call(argument)
        except NumbersError as exc:
            raise VonageFailure("numbers", str(exc), transient=False) from exc
        except HttpRequestError as exc:
            raise _http_failure(exc) from exc
        except requests.RequestException as exc:
            raise VonageFailure("connection", type(exc).__name__, transient=True) from exc


def _sms_status(exc: SmsError) -> str:
    """The SDK has no per-code error class: the status is only in the message text."""
    found = _SMS_STATUS.search(str(exc))
    return found.group(1) if found else "unknown"


def _sms_error_text(client: Vonage) -> str:
    body = _last_json(client)
    messages = body.get("messages") or [{}]
    return str(messages[0].get("error-text", "error"))


def _insight_status(client: Vonage) -> tuple[int, str]:
    body = _last_json(client)
    try:
        return int(body.get("status", -1)), str(body.get("status_message", "error"))
    except (TypeError, ValueError):
        return -1, "error"


def _last_json(client: Vonage) -> dict[str, Any]:
    response = client.http_client.last_response
    try:
        body = response.json() if response is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _http_failure(exc: HttpRequestError) -> VonageFailure:
    status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
    transient = status == 429 or status >= 500
    return VonageFailure(f"http{status}", f"HTTP {status}", transient=transient)


class PooledVonage:
    """A VonagePort over a pool of clients of one account, each used by one call at a time.

    The SDK's client is not safe to share between concurrent calls, and a client per thread
    falls short twice: the gevent pool runs each task in a new greenlet (a client, and a TLS
    handshake, per send), and the thread pool gives each task to whichever idle thread takes
    it, so at a low rate the calls spread over up to all of its threads' connections, each of
    which may have idled past the server's keep-alive timeout when its turn comes. A call takes
    the client used last (whose connection is the warmest) or builds one when all are busy;
    the pool holds at most as many as ever ran at once.
    """

    def __init__(self, build: Callable[[], VonagePort]) -> None:
        self._build = build
        self._idle: list[VonagePort] = []
        self._lock = threading.Lock()

    def _use(self, call: Callable[[VonagePort], _T]) -> _T:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._build()
        try:
            return call(client)
        finally:
            with self._lock:
                self._idle.append(client)

    @property
    def idle(self) -> int:
        """How many clients wait for a call (for tests and the pre-warm)."""
        with self._lock:
            return len(self._idle)

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback: str | None
    ) -> SentSms:
        return self._use(lambda c: c.send_sms(
            sender=sender, recipient=recipient, text=text, client_ref=client_ref,
            callback=callback))

    def basic_insight(self, msisdn: str) -> NumberInsight:
        return self._use(lambda c: c.basic_insight(msisdn))

    def owned_numbers(self) -> list[OwnedNumber]:
        return self._use(lambda c: c.owned_numbers())

    def search_numbers(self, country: str, size: int) -> list[AvailableNumber]:
        return self._use(lambda c: c.search_numbers(country, size))

    def buy_number(self, country: str, msisdn: str) -> None:
        self._use(lambda c: c.buy_number(country, msisdn))

    def set_inbound_url(self, country: str, msisdn: str, url: str) -> None:
        self._use(lambda c: c.set_inbound_url(country, msisdn, url))

    def cancel_number(self, country: str, msisdn: str) -> None:
        self._use(lambda c: c.cancel_number(country, msisdn))


class TimedVonage:
    """A VonagePort that times each call into `smsproxy_vonage_request_duration_seconds`,
    labelled by API and outcome (ok, error). The timing write never hides the call's result.

    Into a process's buffer when given one (the worker's: written about once a second, with
    its finished tasks), where writing each call's timing at once cost every send a Redis
    round trip of its own (docs/performance.md, section 2).
    """

    def __init__(self, inner: VonagePort, timings: Counters | HistogramBuffer) -> None:
        self._inner = inner
        self._timings = timings

    def _timed(self, api: str, call: Callable[[], _T]) -> _T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = call()
            outcome = "ok"
            return result
        finally:
            try:
                timings = self._timings
                timings.observe(VONAGE_DURATION, time.perf_counter() - started,
                                {"api": api, "outcome": outcome})
                if isinstance(timings, HistogramBuffer):
                    timings.flush_if_due()
            except redis.RedisError:
                log.warning("could not record the time of a Vonage %s call", api)

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback: str | None
    ) -> SentSms:
        return self._timed("sms", lambda: self._inner.send_sms(
            sender=sender, recipient=recipient, text=text, client_ref=client_ref,
            callback=callback))

    def basic_insight(self, msisdn: str) -> NumberInsight:
        return self._timed("number_insight", lambda: self._inner.basic_insight(msisdn))

    def owned_numbers(self) -> list[OwnedNumber]:
        return self._timed("numbers_owned", self._inner.owned_numbers)

    def search_numbers(self, country: str, size: int) -> list[AvailableNumber]:
        return self._timed("numbers_search", lambda: self._inner.search_numbers(country, size))

    def buy_number(self, country: str, msisdn: str) -> None:
        self._timed("numbers_buy", lambda: self._inner.buy_number(country, msisdn))

    def set_inbound_url(self, country: str, msisdn: str, url: str) -> None:
        self._timed("numbers_update", lambda: self._inner.set_inbound_url(country, msisdn, url))

    def cancel_number(self, country: str, msisdn: str) -> None:
        self._timed("numbers_cancel", lambda: self._inner.cancel_number(country, msisdn))
