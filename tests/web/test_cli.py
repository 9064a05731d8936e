"""The operators' CLI: `flask --app web.wsgi pool status|sync`."""

from shared.pool_inventory import PoolInventory
from tests.doubles import FakePublisher
from web.app import create_app


def test_pool_status_lists_numbers_and_targets(fake_redis, make_settings):
    inventory = PoolInventory(fake_redis)
    inventory.add("447700900100", "GB", monthly_cost="1.25")
    inventory.add("447700900101", "GB")
    app = create_app(make_settings(SMSPROXY_POOL_TARGETS="GB=3"), redis_client=fake_redis,
                     publisher=FakePublisher())
    result = app.test_cli_runner().invoke(args=["pool", "status"])
    assert result.exit_code == 0, result.output
    assert "+447700900100" in result.output and "1.25" in result.output
    assert "GB: 2 allocatable, target 3" in result.output


def test_pool_sync_reports_a_refusal_as_an_error_not_a_traceback(fake_redis, make_settings):
    # no Vonage reachable at this host: the command fails with a clear message
    settings = make_settings(VONAGE_REST_HOST="127.0.0.1:9", SMSPROXY_VONAGE_TIMEOUT_SECONDS="1")
    app = create_app(settings, redis_client=fake_redis, publisher=FakePublisher())
    result = app.test_cli_runner().invoke(args=["pool", "sync"])
    assert result.exit_code != 0
    assert "maintenance stopped: connection" in result.output
