"""Number Insight basic through the real vonage SDK."""

from collections.abc import Callable

import pytest
from vonage import Vonage
from vonage_http_client.errors import ServerError
from vonage_number_insight import BasicInsightRequest
from vonage_number_insight.errors import NumberInsightError

from sandbox.testing import SandboxProcess


@pytest.mark.parametrize(
    ("number", "country", "iso3", "name", "prefix", "national"),
    [
        ("447700900001", "GB", "GBR", "United Kingdom", "44", "07700 900001"),
        ("12015550123", "US", "USA", "United States", "1", "(201) 555-0123"),
        ("4915123456789", "DE", "DEU", "Germany", "49", "01512 3456789"),
    ],
)
def test_valid_number(
    vonage: Vonage, number: str, country: str, iso3: str, name: str, prefix: str, national: str
) -> None:
    info = vonage.number_insight.get_basic_info(BasicInsightRequest(number=number))

    assert info.status == 0
    assert info.international_format_number == number
    assert info.national_format_number == national
    assert (info.country_code, info.country_code_iso3) == (country, iso3)
    assert (info.country_name, info.country_prefix) == (name, prefix)
    raw = vonage.http_client.last_response.json()
    assert raw["status"] == 0 and isinstance(raw["status"], int)
    assert raw["status_message"] == "Success" and raw["request_id"]


def test_invalid_number_is_status_3(vonage: Vonage) -> None:
    with pytest.raises(NumberInsightError):
        vonage.number_insight.get_basic_info(BasicInsightRequest(number="4412345"))

    raw = vonage.http_client.last_response.json()
    assert raw["status"] == 3 and "Invalid request" in raw["status_message"]


def test_national_number_with_country(sb: SandboxProcess) -> None:
    reply = sb.client._session.get(
        f"{sb.url}/ni/basic/json",
        params={"number": "2015550123", "country": "US"},
        auth=("sandbox-key", "sandbox-secret"),
        timeout=5,
    ).json()

    assert reply["status"] == 0 and reply["international_format_number"] == "12015550123"


def test_wrong_credentials_are_status_4(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    client = vonage_for(sb, secret="wrong")

    with pytest.raises(NumberInsightError):
        client.number_insight.get_basic_info(BasicInsightRequest(number="447700900001"))

    assert client.http_client.last_response.status_code == 200
    assert client.http_client.last_response.json()["status"] == 4


def test_throttle_is_status_1_and_errors_are_http_500(sb: SandboxProcess, vonage: Vonage) -> None:
    request = BasicInsightRequest(number="447700900001")
    sb.client.set_faults(throttle_rate=1.0)
    with pytest.raises(NumberInsightError):
        vonage.number_insight.get_basic_info(request)
    assert vonage.http_client.last_response.json()["status"] == 1

    sb.client.set_faults(throttle_rate=0, error_rate=1.0)
    with pytest.raises(ServerError):
        vonage.number_insight.get_basic_info(request)


def test_a_seed_makes_random_faults_repeatable(sb: SandboxProcess, vonage: Vonage) -> None:
    request = BasicInsightRequest(number="447700900001")

    def outcomes() -> list[int]:
        seen = []
        for _ in range(24):
            try:
                seen.append(vonage.number_insight.get_basic_info(request).status)
            except NumberInsightError:
                seen.append(vonage.http_client.last_response.json()["status"])
        return seen

    try:
        sb.client.set_faults(throttle_rate=0.5, seed=7)
        first = outcomes()
        sb.client.set_faults(seed=7)
        assert outcomes() == first
        assert set(first) == {0, 1}  # both outcomes occur: the faults really are random
    finally:
        sb.client.set_faults(throttle_rate=0.0)


def test_every_lookup_is_counted_and_reset_clears_the_count(
    vonage: Vonage, sb: SandboxProcess
) -> None:
    before = sb.client.stats()["insight_lookups"]
    vonage.number_insight.get_basic_info(BasicInsightRequest(number="447700900001"))
    with pytest.raises(NumberInsightError):
        vonage.number_insight.get_basic_info(BasicInsightRequest(number="4412345"))

    assert sb.client.stats()["insight_lookups"] == before + 2
    sb.client.reset()
    assert sb.client.stats()["insight_lookups"] == 0
