"""API clients: `name:token` entries, refused short tokens, identification by digest."""

from __future__ import annotations

import pytest

from shared.clients import MIN_TOKEN_LENGTH, ApiClients
from shared.settings import Settings, SettingsError

RIDES = "r" * MIN_TOKEN_LENGTH
SHOP = "s-" + "x" * MIN_TOKEN_LENGTH


def test_named_clients_are_identified_by_their_token():
    clients = ApiClients.parse(f"rides:{RIDES}, shop:{SHOP}")
    assert clients.names() == ("rides", "shop")
    assert clients.identify(RIDES).name == "rides"
    assert clients.identify(SHOP).name == "shop"
    assert clients.identify(RIDES + "x") is None
    assert clients.identify("") is None


def test_a_bare_token_is_a_client_of_its_own_named_by_its_digest():
    clients = ApiClients.parse(f"{RIDES},{SHOP}")
    first, second = clients.names()
    assert first.startswith("token-") and second.startswith("token-") and first != second
    assert RIDES not in first
    assert clients.identify(SHOP).name == second


def test_only_digests_are_kept():
    clients = ApiClients.parse(f"rides:{RIDES}")
    assert RIDES not in repr(clients)


@pytest.mark.parametrize("raw, problem", [
    ("rides:short", "at least 32 characters"),
    ("short", "at least 32 characters"),
    (f"bad name:{RIDES}", "client name must match"),
    (f":{RIDES}", "client name must match"),
    (f"rides:{RIDES},rides:{SHOP}", "listed twice"),
    (f"rides:{RIDES},shop:{RIDES}", "same token is listed twice"),
    (f"rides:{'é' * 40}", "visible ASCII"),
])
def test_bad_entries_stop_the_start_naming_the_variable_and_never_the_token(raw, problem):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SMSPROXY_API_TOKENS": raw})
    assert str(caught.value).startswith("SMSPROXY_API_TOKENS: ")
    assert problem in str(caught.value)
    assert RIDES not in str(caught.value) and "short" not in str(caught.value).split(":", 1)[1][:12]


def test_buying_on_demand_needs_a_ceiling():
    with pytest.raises(SettingsError, match="SMSPROXY_BUY_ON_DEMAND: needs"):
        Settings.from_env({"SMSPROXY_BUY_ON_DEMAND": "true"})
    assert Settings.from_env({"SMSPROXY_BUY_ON_DEMAND": "true",
                              "SMSPROXY_POOL_MAXIMUMS": "GB=5"}).buy_on_demand
    assert Settings.from_env({"SMSPROXY_BUY_ON_DEMAND": "true",
                              "SMSPROXY_POOL_MONTHLY_BUDGET": "50"}).buy_on_demand


@pytest.mark.parametrize("raw", ["lots", "100/fortnight", "-1/second"])
def test_a_rate_limit_must_be_one_the_limiter_understands(raw):
    with pytest.raises(SettingsError, match="SMSPROXY_API_RATE_LIMIT"):
        Settings.from_env({"SMSPROXY_API_RATE_LIMIT": raw})


def test_rate_limit_none_turns_it_off():
    assert Settings.from_env({"SMSPROXY_API_RATE_LIMIT": "none"}).api_rate_limit is None
