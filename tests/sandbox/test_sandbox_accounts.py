"""Several accounts in one sandbox, through the real vonage SDK: each number belongs to the
account that rents it, webhooks name and are signed by that account, and the SMS API holds
each API key to its own rate (status 1 "Throttled" beyond it)."""

from collections.abc import Callable, Iterator

import pytest
from vonage import Auth, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_numbers import ListOwnedNumbersFilter, NumberParams, UpdateNumberParams
from vonage_sms import SmsError, SmsMessage
from webhook_receiver import Receiver

from sandbox.config import parse_accounts
from sandbox.testing import SandboxProcess

FIRST = ("sandbox-key", "sandbox-secret", "first-signing-secret")
SECOND = ("second-key", "second-secret", "second-signing-secret")
FIRST_NUMBER, SECOND_NUMBER = "447700900100", "447700900101"
HANDSET = "447700900001"


def accounts_sandbox(start: Callable[..., SandboxProcess], **options: object) -> SandboxProcess:
    return start(signature_secret=FIRST[2], signature_method="sha256",
                 accounts=":".join(SECOND), **options)


@pytest.fixture
def sb(start_sandbox: Callable[..., SandboxProcess]) -> Iterator[SandboxProcess]:
    yield accounts_sandbox(start_sandbox)


def client(vonage_for: Callable[..., Vonage], sb: SandboxProcess, account: tuple[str, ...]
           ) -> Vonage:
    return vonage_for(sb, key=account[0], secret=account[1])


def owned(vonage: Vonage) -> list[str]:
    numbers, _count, _next = vonage.numbers.list_owned_numbers(ListOwnedNumbersFilter())
    return [n.msisdn for n in numbers]


def test_a_number_belongs_to_the_account_that_bought_it(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    first, second = client(vonage_for, sb, FIRST), client(vonage_for, sb, SECOND)

    first.numbers.buy_number(NumberParams(country="GB", msisdn=FIRST_NUMBER))
    second.numbers.buy_number(NumberParams(country="GB", msisdn=SECOND_NUMBER))

    assert owned(first) == [FIRST_NUMBER]
    assert owned(second) == [SECOND_NUMBER]
    # another account's number is not this one's to change or give back (420 method failed)
    with pytest.raises(HttpRequestError):
        first.numbers.update_number(
            UpdateNumberParams(country="GB", msisdn=SECOND_NUMBER, mo_http_url="https://x.test"))
    with pytest.raises(HttpRequestError):
        first.numbers.cancel_number(NumberParams(country="GB", msisdn=SECOND_NUMBER))
    accounts = {n["msisdn"]: n["account"] for n in sb.client.owned_numbers()}
    assert accounts == {FIRST_NUMBER: FIRST[0], SECOND_NUMBER: SECOND[0]}


def test_an_account_sends_only_from_its_own_numbers(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage]
) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": FIRST_NUMBER},
                         {"country": "GB", "msisdn": SECOND_NUMBER, "account": SECOND[0]}])
    second = client(vonage_for, sb, SECOND)

    with pytest.raises(SmsError, match="error code 15"):
        second.sms.send(SmsMessage(to=HANDSET, from_=FIRST_NUMBER, text="not mine"))
    second.sms.send(SmsMessage(to=HANDSET, from_=SECOND_NUMBER, text="mine"))

    [sent] = sb.client.sms_log()
    assert (sent["from"], sent["account"]) == (SECOND_NUMBER, SECOND[0])


def test_each_key_has_its_own_rate(
    start_sandbox: Callable[..., SandboxProcess], vonage_for: Callable[..., Vonage]
) -> None:
    sb = accounts_sandbox(start_sandbox, rate_per_key=1)
    sb.client.add_owned([{"country": "GB", "msisdn": FIRST_NUMBER},
                         {"country": "GB", "msisdn": SECOND_NUMBER, "account": SECOND[0]}])
    first = client(vonage_for, sb, FIRST)
    outcomes = []
    # at one request per second, a run of five back to back cannot all pass
    for n in range(5):
        try:
            first.sms.send(SmsMessage(to=HANDSET, from_=FIRST_NUMBER, text=f"m{n}"))
            outcomes.append("0")
        except SmsError as exc:
            assert "error code 1:" in str(exc) and "Throttled" in str(exc)
            outcomes.append("1")
    assert outcomes[0] == "0" and "1" in outcomes

    # the other key's bucket is untouched by the first's
    client(vonage_for, sb, SECOND).sms.send(
        SmsMessage(to=HANDSET, from_=SECOND_NUMBER, text="other key"))
    stats = sb.client.stats()["accounts"]
    assert stats[FIRST[0]]["sms_throttled"] == outcomes.count("1")
    assert stats[SECOND[0]] == {"sms_sent": 1, "sms_throttled": 0, "owned_numbers": 1}


def test_webhooks_name_and_are_signed_by_the_numbers_account(
    sb: SandboxProcess, vonage_for: Callable[..., Vonage], receiver: Receiver
) -> None:
    sb.client.add_owned([{"country": "GB", "msisdn": SECOND_NUMBER, "account": SECOND[0],
                          "moHttpUrl": receiver.url}])

    sb.client.send_from_handset(HANDSET, SECOND_NUMBER, "to the second account")
    client(vonage_for, sb, SECOND).sms.send(SmsMessage(
        to=HANDSET, from_=SECOND_NUMBER, text="x", callback=f"{receiver.base_url}/dlr"))

    for webhook in receiver.wait_for(2):
        params = webhook.params
        assert params["api-key"] == SECOND[0]
        own = Auth(api_key=SECOND[0], signature_secret=SECOND[2], signature_method="sha256")
        other = Auth(api_key=FIRST[0], signature_secret=FIRST[2], signature_method="sha256")
        assert own.check_signature(dict(params))
        assert not other.check_signature(dict(params))


def test_an_account_entry_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="bad account 2") as refused:
        parse_accounts("k1:s1:sig1,k2")
    assert "s1" not in str(refused.value)
