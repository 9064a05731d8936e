import re
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, SignatureMethod, documented_variables


def test_defaults_follow_the_design_contract():
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.broker_url == settings.redis_url
    assert settings.vonage_signature_method is SignatureMethod.MD5HASH
    assert settings.vonage_api_host == "api.nexmo.com"
    assert settings.vonage_rest_host == "rest.nexmo.com"
    assert not settings.api_clients
    assert settings.api_rate_limit == "100/second;3000/minute"
    assert settings.retention_seconds == 30 * 24 * 3600
    assert settings.inbound_url is None


def test_broker_follows_redis_url_unless_set():
    assert Settings.from_env({"REDIS_URL": "redis://h:1/2"}).broker_url == "redis://h:1/2"
    assert Settings.from_env({"REDIS_URL": "redis://h:1/2", "CELERY_BROKER_URL": "redis://b/0"}
                             ).broker_url == "redis://b/0"


def test_parses_lists_and_targets():
    settings = Settings.from_env(
        {"SMSPROXY_API_TOKENS": f"a:{'a' * 32}, b:{'b' * 32},,{'c' * 40}",
         "SMSPROXY_POOL_TARGETS": "gb=3, US=2",
         "PUBLIC_BASE_URL": "https://proxy.example/"}
    )
    assert settings.api_clients.names()[:2] == ("a", "b")
    assert len(settings.api_clients.names()) == 3
    assert dict(settings.pool_targets) == {"GB": 3, "US": 2}
    assert settings.inbound_url == "https://proxy.example/webhooks/inbound-sms"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SMSPROXY_POOL_TARGETS": "GB3"}, "SMSPROXY_POOL_TARGETS"),
        ({"SMSPROXY_POOL_TARGETS": "GB=-1"}, "SMSPROXY_POOL_TARGETS"),
        ({"VONAGE_SIGNATURE_METHOD": "sha3"}, "VONAGE_SIGNATURE_METHOD"),
        ({"SMSPROXY_DEFAULT_TTL_SECONDS": "soon"}, "SMSPROXY_DEFAULT_TTL_SECONDS"),
        ({"SMSPROXY_RETAIN_BODIES": "maybe"}, "SMSPROXY_RETAIN_BODIES"),
        ({"PUBLIC_BASE_URL": "proxy.example"}, "PUBLIC_BASE_URL"),
        ({"SMSPROXY_MASK_KINDS": "phone,fax"}, "SMSPROXY_MASK_KINDS"),
        ({"SMSPROXY_MASK_MARKER": "x" * 33}, "SMSPROXY_MASK_MARKER"),
        ({"SMSPROXY_OPT_OUT_KEYWORDS": "STOP,ST OP"}, "SMSPROXY_OPT_OUT_KEYWORDS"),
        ({"SMSPROXY_OPT_OUT_KEYWORDS": "STOP,ARRÊT"}, "SMSPROXY_OPT_OUT_KEYWORDS"),
        ({"SMSPROXY_HELP_KEYWORDS": "HELP,stop"}, "SMSPROXY_HELP_KEYWORDS"),
        ({"SMSPROXY_OPT_IN_KEYWORDS": "START,quit"}, "SMSPROXY_OPT_IN_KEYWORDS"),
        ({"SMSPROXY_OPT_OUT_REPLY": "Bye {name}"}, "SMSPROXY_OPT_OUT_REPLY"),
        ({"SMSPROXY_HELP_REPLY": "{}"}, "SMSPROXY_HELP_REPLY"),
        ({"SMSPROXY_OPTED_OUT_NOTICE_TEMPLATE": "{counterpart:>99}"},
         "SMSPROXY_OPTED_OUT_NOTICE_TEMPLATE"),
    ],
)
def test_bad_values_name_their_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_readme_documents_every_setting():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    listed = set(re.findall(r"^\| `([A-Z_]+)`", readme, flags=re.M))
    assert set(documented_variables()) <= listed


def test_metrics_token_is_off_unless_set():
    assert Settings.from_env({}).metrics_token is None
    assert Settings.from_env({"SMSPROXY_METRICS_TOKEN": "  "}).metrics_token is None
    assert Settings.from_env({"SMSPROXY_METRICS_TOKEN": " m-token "}).metrics_token == "m-token"


@pytest.mark.parametrize("url", [
    "http://market.example/oos", "https://127.0.0.1/oos", "https://169.254.169.254/",
    "https://u:p@market.example/oos",
])
def test_an_out_of_session_url_to_a_forbidden_destination_stops_the_process(url):
    env = {"SMSPROXY_CALLBACK_SECRET": "s", "SMSPROXY_OUT_OF_SESSION_CALLBACK_URL": url}
    with pytest.raises(SettingsError, match="SMSPROXY_OUT_OF_SESSION_CALLBACK_URL"):
        Settings.from_env(env)


def test_local_out_of_session_receivers_need_both_development_settings():
    env = {"SMSPROXY_CALLBACK_SECRET": "s",
           "SMSPROXY_OUT_OF_SESSION_CALLBACK_URL": "http://127.0.0.1:9000/oos",
           "SMSPROXY_ALLOW_HTTP_CALLBACKS": "true", "SMSPROXY_CALLBACK_ALLOWED_HOSTS": "127.0.0.1"}
    assert Settings.from_env(env).callback_policy.allowed_hosts == {"127.0.0.1"}


def test_privacy_defaults_are_on():
    from shared.masking import ContactKind

    settings = Settings.from_env({})
    assert settings.mask_kinds == {ContactKind.PHONE, ContactKind.EMAIL}
    assert settings.mask_marker == "[hidden]"
    assert settings.opt_out_keywords == {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                                         "QUIT", "OPTOUT", "REVOKE"}
    assert settings.opt_in_keywords == {"START", "UNSTOP", "YES"}
    assert settings.help_keywords == {"HELP", "INFO"}
    custom = Settings.from_env({"SMSPROXY_OPT_OUT_KEYWORDS": " arret, opt-out ,",
                                "SMSPROXY_MASK_KINDS": "none"})
    assert custom.opt_out_keywords == {"ARRET", "OPT-OUT"} and custom.mask_kinds == frozenset()
