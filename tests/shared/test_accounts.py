"""Several Vonage accounts: the setting, sends through the number's account under its own
bucket, and pool maintenance over every account (fakeredis, in-memory Vonage ports)."""

import time

import pytest

from shared.accounts import VonageAccount, VonageAccounts
from shared.domain import MessageKind, OutboundSms
from shared.settings import SettingsError
from shared.vonage_gateway import AvailableNumber, OwnedNumber, VonagePort
from shared.wiring import Services
from tests.conftest import build_settings
from tests.doubles import FakeVonage
from tests.shared.conftest import A

URL = "http://127.0.0.1:9/webhooks/inbound-sms"
TWO = {"SMSPROXY_VONAGE_ACCOUNTS": "key1:secret1:sig1, key2:secret2:sig2",
       "VONAGE_API_KEY": "", "VONAGE_API_SECRET": ""}


class FakePorts:
    """One FakeVonage per account, by API key, selling from one market (a number one account
    buys is gone for the others)."""

    def __init__(self, *keys: str, available: list[AvailableNumber] | None = None) -> None:
        market = list(available or [])
        self.ports = {key: FakeVonage(available=market) for key in keys}

    def port(self, api_key: str) -> VonagePort:
        return self.ports[api_key]


def gb(n: int) -> AvailableNumber:
    return AvailableNumber(f"4477009001{n:02d}", "GB", "1.25")


# the setting


def test_entries_parse_in_order_and_secrets_stay_out_of_reprs_and_errors():
    accounts = VonageAccounts.parse("key1:secret1:sig1,key2:secret2:")
    assert accounts.keys == ("key1", "key2")
    assert accounts.get("key2") == VonageAccount("key2", "secret2", None)
    assert accounts.primary is not None and accounts.primary.signature_secret == "sig1"
    assert "secret1" not in repr(accounts) and "sig1" not in repr(accounts)
    for bad, says in [("key1", "entry 1"), ("key1:secret1,key2:", "entry 2 (key2)"),
                      ("key1:secret1,key1:other", "listed twice")]:
        with pytest.raises(ValueError, match=r"entry|listed") as refused:
            VonageAccounts.parse(bad)
        assert says in str(refused.value)
        assert "secret1" not in str(refused.value) and "other" not in str(refused.value)


def test_entries_may_come_from_a_file(tmp_path):
    path = tmp_path / "accounts"
    path.write_text("# one account per line\nkey1:secret1:sig1\nkey2:secret2:sig2  # second\n")
    settings = build_settings(SMSPROXY_VONAGE_ACCOUNTS=f"@{path}", VONAGE_API_KEY="",
                              VONAGE_API_SECRET="")
    assert settings.vonage_accounts.keys == ("key1", "key2")
    with pytest.raises(SettingsError, match="SMSPROXY_VONAGE_ACCOUNTS: cannot read"):
        build_settings(SMSPROXY_VONAGE_ACCOUNTS=f"@{tmp_path / 'missing'}")


def test_the_single_account_settings_are_one_account():
    settings = build_settings(VONAGE_SIGNATURE_SECRET="sig")
    assert settings.vonage_accounts == VonageAccounts(
        (VonageAccount("sandbox-key", "sandbox-secret", "sig"),))


def test_both_kinds_of_credentials_at_once_are_refused():
    with pytest.raises(SettingsError, match="set either it or VONAGE_API_KEY"):
        build_settings(SMSPROXY_VONAGE_ACCOUNTS="key1:secret1:sig1")


def test_web_needs_a_signature_secret_for_every_account():
    settings = build_settings(**{**TWO, "SMSPROXY_VONAGE_ACCOUNTS": "key1:s1:sig1,key2:s2",
                                 "SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS": "false"})
    with pytest.raises(SettingsError, match="account key2 has no signature secret"):
        settings.validate_for_web()
    build_settings(**TWO, SMSPROXY_ALLOW_UNSIGNED_WEBHOOKS="false").validate_for_web()


# sends


@pytest.fixture
def two_accounts(fake_redis):
    def build(**env: str) -> Services:
        services = Services.from_settings(build_settings(**TWO, **env), fake_redis)
        services.inventory.add("447700900100", "GB", account="key1")
        services.inventory.add("447700900101", "GB", account="key2")
        return services

    return build


def owe(services: Services, outbound_id: str, sender: str) -> None:
    services.messages.owe(OutboundSms(outbound_id, None, MessageKind.RELAY, sender, A, "x",
                                      created_at=time.time()))


def test_a_send_goes_through_the_account_of_its_number(two_accounts):
    services = two_accounts(SMSPROXY_SEND_RATE_PER_SECOND="0")
    ports = FakePorts("key1", "key2")
    owe(services, "o1", "447700900100")
    owe(services, "o2", "447700900101")
    owe(services, "o3", "447700900199")  # not a pool number: the primary account

    for outbound_id in ("o1", "o2", "o3"):
        services.sender.send(outbound_id, ports)

    assert [m["client_ref"] for m in ports.ports["key1"].sent] == ["o1", "o3"]
    assert [m["client_ref"] for m in ports.ports["key2"].sent] == ["o2"]


def test_each_account_has_its_own_rate_bucket(two_accounts):
    from shared.sending import Throttled

    services = two_accounts(SMSPROXY_SEND_RATE_PER_SECOND="1", SMSPROXY_SEND_BURST="1")
    ports = FakePorts("key1", "key2")
    for n in range(2):
        owe(services, f"a{n}", "447700900100")
        owe(services, f"b{n}", "447700900101")

    services.sender.send("a0", ports)
    with pytest.raises(Throttled):
        services.sender.send("a1", ports)  # key1's one token is spent
    services.sender.send("b0", ports)  # key2's is not
    with pytest.raises(Throttled):
        services.sender.send("b1", ports)
    assert len(ports.ports["key1"].sent) == len(ports.ports["key2"].sent) == 1


# pool maintenance


@pytest.fixture
def keeper(fake_redis):
    def build(**env: str) -> Services:
        return Services.from_settings(
            build_settings(**{**TWO, "SMSPROXY_POOL_TARGETS": "GB=4", **env}), fake_redis)

    return build


def test_buying_spreads_the_target_over_the_accounts(keeper):
    services = keeper()
    ports = FakePorts("key1", "key2", available=[gb(i) for i in range(12)])

    report = services.pool_keeper.maintain(ports)

    assert len(report.bought) == 4
    held = {key: [n.msisdn for n in port.owned] for key, port in ports.ports.items()}
    assert len(held["key1"]) == len(held["key2"]) == 2
    recorded = {n.msisdn: n.account for n in services.inventory.numbers()}
    assert recorded == {m: key for key, numbers in held.items() for m in numbers}
    assert all(n.inbound_url == URL for port in ports.ports.values() for n in port.owned)
    assert services.pool_keeper.maintain(ports).bought == []


def test_buying_goes_to_the_account_with_the_fewest_numbers(keeper):
    services = keeper(SMSPROXY_POOL_TARGETS="GB=3")
    ports = FakePorts("key1", "key2", available=[gb(i) for i in range(12)])
    ports.ports["key1"].owned = [OwnedNumber(gb(50).msisdn, "GB", URL),
                                 OwnedNumber(gb(51).msisdn, "GB", URL)]

    report = services.pool_keeper.maintain(ports)

    assert sorted(report.adopted) == [gb(50).msisdn, gb(51).msisdn]
    assert len(report.bought) == 1 and report.bought[0] in {n.msisdn for n in
                                                            ports.ports["key2"].owned}


def test_an_account_with_nothing_to_offer_leaves_buying_to_the_others(keeper):
    services = keeper(SMSPROXY_POOL_TARGETS="GB=2")
    ports = FakePorts("key1", "key2")
    ports.ports["key2"].available = [gb(1), gb(2)]

    assert len(services.pool_keeper.maintain(ports).bought) == 2
    assert len(ports.ports["key2"].owned) == 2 and ports.ports["key1"].owned == []


def test_reconciling_covers_every_account(keeper):
    services = keeper(SMSPROXY_POOL_TARGETS="GB=0", SMSPROXY_POOL_ADOPT="true")
    ports = FakePorts("key1", "key2")
    ports.ports["key2"].owned = [OwnedNumber(gb(1).msisdn, "GB", "https://elsewhere.test/in")]
    services.inventory.add(gb(2).msisdn, "GB")  # recorded before accounts were
    ports.ports["key1"].owned = [OwnedNumber(gb(2).msisdn, "GB", URL)]
    services.inventory.add(gb(3).msisdn, "GB", account="key2")  # gone from key2

    report = services.pool_keeper.maintain(ports)

    assert report.adopted == [gb(1).msisdn] and report.repaired == [gb(1).msisdn]
    assert report.lost == [gb(3).msisdn]
    assert services.inventory.account_of(gb(1).msisdn) == "key2"
    assert services.inventory.account_of(gb(2).msisdn) == "key1"
    assert ports.ports["key2"].owned[0].inbound_url == URL


def test_a_drained_number_is_cancelled_on_its_own_account(keeper):
    services = keeper(SMSPROXY_POOL_TARGETS="GB=0", SMSPROXY_POOL_RELEASE="true")
    ports = FakePorts("key1", "key2")
    ports.ports["key2"].owned = [OwnedNumber(gb(1).msisdn, "GB", URL)]
    services.inventory.add(gb(1).msisdn, "GB", account="key2")

    services.pool_keeper.maintain(ports)  # drained: above the target, no routes
    services.pool_keeper.maintain(ports)

    assert ports.ports["key2"].cancelled == [gb(1).msisdn]
    assert ports.ports["key1"].cancelled == []


def test_no_secret_is_in_the_settings_repr():
    settings = build_settings(VONAGE_SIGNATURE_SECRET="sig-secret-1",
                              SMSPROXY_CALLBACK_SECRET="callback-secret-1",
                              SMSPROXY_METRICS_TOKEN="metrics-token-1")
    listed = build_settings(**TWO)
    text = repr(settings) + repr(listed)
    for secret in ("sandbox-secret", "sig-secret-1", "callback-secret-1", "metrics-token-1",
                   "secret1", "sig2"):
        assert secret not in text
    assert "key1" in text  # keys are not secret: every webhook names its account's
