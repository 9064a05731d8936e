"""The redis+sentinel:// URL: what it names, and what kombu is given for it."""

from __future__ import annotations

import pytest

from shared.sentinel import SentinelUrl, celery_broker, is_sentinel_url, parse_sentinel_url
from shared.settings import Settings, SettingsError


def test_a_url_names_its_sentinels_master_and_database():
    found = parse_sentinel_url("redis+sentinel://u:p%40ss@10.0.0.1:26380,[::1]:1,s3/main/2")
    assert found == SentinelUrl(
        (("10.0.0.1", 26380), ("::1", 1), ("s3", 26379)), "main", 2, "u", "p@ss")


def test_the_database_defaults_to_zero():
    assert parse_sentinel_url("REDIS+SENTINEL://h/main").db == 0


@pytest.mark.parametrize("url", [
    "redis://h/0", "redis+sentinel:///main/0", "redis+sentinel://h/", "redis+sentinel://h/m/x",
    "redis+sentinel://h/m/0/extra", "redis+sentinel://h:port/m", "redis+sentinel://h:0/m",
    "redis+sentinel://h,,g/m",
])
def test_malformed_urls_are_refused(url):
    with pytest.raises(ValueError, match=r"."):
        parse_sentinel_url(url)


def test_kombu_gets_one_sentinel_url_per_sentinel_and_the_master_as_an_option():
    url, options = celery_broker("redis+sentinel://:p%3Bw@a:1,b:2/main/3")
    # the password is quoted: a `;` in it would split kombu's list
    assert url == "sentinel://:p%3Bw@a:1/3;sentinel://:p%3Bw@b:2/3"
    assert options == {"master_name": "main"}


def test_other_broker_urls_pass_through():
    assert celery_broker("redis://h:6379/0") == ("redis://h:6379/0", {})
    assert not is_sentinel_url("redis://h:6379/0")


def test_kombus_own_form_is_refused_it_names_no_master():
    with pytest.raises(ValueError, match="master"):
        celery_broker("sentinel://h:26379;sentinel://g:26379")


def test_settings_refuse_a_bad_sentinel_url_at_start():
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings.from_env({"REDIS_URL": "redis+sentinel://h/"})
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL"):
        Settings.from_env({"CELERY_BROKER_URL": "sentinel://h:26379"})
    settings = Settings.from_env({"REDIS_URL": "redis+sentinel://h/main/0"})
    assert settings.broker_url == settings.redis_url  # the broker follows the store
    assert settings.min_replicas_acked == 0
