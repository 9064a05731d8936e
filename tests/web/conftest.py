import pytest

from tests.conftest import TEST_TOKEN
from tests.doubles import FakePublisher
from web.app import create_app


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def make_client(fake_redis, make_settings, publisher):
    def build(publisher=publisher, **env):
        app = create_app(make_settings(**env), redis_client=fake_redis, publisher=publisher)
        return app.test_client()

    return build


@pytest.fixture
def client(make_client):
    return make_client()


AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
