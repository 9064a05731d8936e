"""The Numbers API through the real vonage SDK."""

from collections.abc import Callable
from typing import Any

import pytest
from vonage import Vonage
from vonage_http_client.errors import AuthenticationError, HttpRequestError, RateLimitedError
from vonage_numbers import (
    ListOwnedNumbersFilter,
    NumberParams,
    SearchAvailableNumbersFilter,
    UpdateNumberParams,
)
from vonage_numbers.enums import NumberFeatures, NumberType

from sandbox.testing import SandboxProcess


def raw(vonage: Vonage) -> dict[str, Any]:
    reply = vonage.http_client.last_response.json()
    assert isinstance(reply, dict)
    return reply


def test_search_pages_through_the_default_gb_inventory(vonage: Vonage) -> None:
    search = SearchAvailableNumbersFilter(
        country="GB", type=NumberType.MOBILE_LVN, features=NumberFeatures.SMS, size=8
    )
    first, count, next_index = vonage.numbers.search_available_numbers(search)
    assert (len(first), count, next_index) == (8, 20, 2)
    assert first[0].msisdn == "447700900100" and first[0].cost == "1.25"
    assert raw(vonage)["numbers"][0]["features"] == ["VOICE", "SMS"]

    search.index = 3
    last, count, next_index = vonage.numbers.search_available_numbers(search)
    assert (len(last), count, next_index) == (4, 20, None)

    search.index = 4
    vonage.numbers.search_available_numbers(search)
    assert raw(vonage) == {"count": 20}  # past the end: no `numbers` key


def test_search_filters(vonage: Vonage) -> None:
    found, count, _ = vonage.numbers.search_available_numbers(
        SearchAvailableNumbersFilter(country="US", pattern="109", search_pattern=2)
    )
    assert [n.msisdn for n in found] == ["12015550109"] and count == 1

    found, count, _ = vonage.numbers.search_available_numbers(
        SearchAvailableNumbersFilter(country="GB", type=NumberType.LANDLINE)
    )
    assert (found, count) == ([], 0)


def test_buy_list_update_cancel(vonage: Vonage, sb: SandboxProcess) -> None:
    vonage.numbers.list_owned_numbers()
    assert raw(vonage) == {"count": 0}  # `numbers` absent, `count` an int

    status = vonage.numbers.buy_number(NumberParams(country="GB", msisdn="447700900105"))
    assert raw(vonage) == {"error-code": "200", "error-code-label": "success"}
    assert status.error_code == "200"

    owned, count, _ = vonage.numbers.list_owned_numbers()
    assert count == 1 and owned[0].msisdn == "447700900105" and owned[0].mo_http_url is None
    assert raw(vonage)["numbers"][0]["type"] == "mobile-lvn"

    url = "http://127.0.0.1:9/webhooks/inbound-sms"
    vonage.numbers.update_number(
        UpdateNumberParams(country="GB", msisdn="447700900105", mo_http_url=url)
    )
    owned, _, _ = vonage.numbers.list_owned_numbers(ListOwnedNumbersFilter(country="GB"))
    assert owned[0].mo_http_url == url
    assert sb.client.owned_numbers()[0]["moHttpUrl"] == url

    vonage.numbers.cancel_number(NumberParams(country="GB", msisdn="447700900105"))
    assert vonage.numbers.list_owned_numbers() == ([], 0, None)
    # A cancelled number goes back on sale.
    found, _, _ = vonage.numbers.search_available_numbers(
        SearchAvailableNumbersFilter(country="GB", pattern="447700900105", search_pattern=0)
    )
    assert [n.msisdn for n in found] == ["447700900105"]


@pytest.mark.parametrize(
    "operation",
    [
        lambda v: v.numbers.buy_number(NumberParams(country="GB", msisdn="447700900199")),
        lambda v: v.numbers.buy_number(NumberParams(country="US", msisdn="447700900101")),
        lambda v: v.numbers.cancel_number(NumberParams(country="GB", msisdn="447700900101")),
        lambda v: v.numbers.update_number(
            UpdateNumberParams(country="GB", msisdn="447700900101", mo_http_url="http://x")
        ),
    ],
    ids=["buy-unknown", "buy-wrong-country", "cancel-not-owned", "update-not-owned"],
)
def test_method_failed_is_http_420(vonage: Vonage, operation: Callable[[Vonage], Any]) -> None:
    with pytest.raises(HttpRequestError) as raised:
        operation(vonage)

    assert raised.value.response.status_code == 420
    assert raised.value.response.json() == {
        "error-code": "420",
        "error-code-label": "method failed",
    }


def test_buying_a_number_twice_is_420(vonage: Vonage) -> None:
    params = NumberParams(country="DE", msisdn="4915123456700")
    vonage.numbers.buy_number(params)

    with pytest.raises(HttpRequestError) as raised:
        vonage.numbers.buy_number(params)
    assert raised.value.response.status_code == 420


def test_owned_numbers_paginate(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.add_owned([{"country": "US", "msisdn": f"1201555{n:04d}"} for n in range(200, 225)])

    pages = []
    for index in (1, 2, 3):
        numbers, count, next_index = vonage.numbers.list_owned_numbers(
            ListOwnedNumbersFilter(country="US", size=10, index=index)
        )
        assert count == 25
        pages.append((len(numbers), next_index))
    assert pages == [(10, 2), (10, 3), (5, None)]


def test_wrong_credentials_are_http_401(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    with pytest.raises(AuthenticationError):
        vonage_for(sb, secret="wrong").numbers.list_owned_numbers()


def test_throttle_is_http_429(sb: SandboxProcess, vonage: Vonage) -> None:
    sb.client.set_faults(throttle_rate=1.0)

    with pytest.raises(RateLimitedError):
        vonage.numbers.buy_number(NumberParams(country="GB", msisdn="447700900100"))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/number/search", {}),
        ("/number/search", {"country": "GB", "size": "101"}),
        ("/account/numbers", {"index": "0"}),
        ("/account/numbers", {"size": "ten"}),
        ("/account/numbers", {"pattern": "44", "search_pattern": "7"}),
    ],
)
def test_bad_parameters_are_http_400(sb: SandboxProcess, path: str, params: dict[str, str]) -> None:
    reply = sb.client._session.get(
        sb.url + path, params=params, auth=("sandbox-key", "sandbox-secret"), timeout=5
    )

    assert reply.status_code == 400 and reply.json()["error-code"] == "400"
