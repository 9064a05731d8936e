import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.doubles import FakePublisher
from tests.web.conftest import AUTH
from web.app import create_app
from web.openapi import openapi_document


class Switchboard:
    target = None
    seen = []
    def __call__(self, environ, start_response):
        def sr(status, headers, exc_info=None):
            Switchboard.seen.append((environ['REQUEST_METHOD'], environ['PATH_INFO'], environ.get('QUERY_STRING'), status[:3], environ.get('HTTP_AUTHORIZATION'), environ.get('CONTENT_TYPE')))
            return start_response(status, headers, exc_info)
        return self.target(environ, sr)

SWITCH = Switchboard()

@pytest.fixture
def app(fake_redis, make_settings):
    app = create_app(make_settings(), redis_client=fake_redis, publisher=FakePublisher())
    SWITCH.target = app
    return app


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
SCHEMA.app = SWITCH


@SCHEMA.parametrize()
@settings(max_examples=20, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case, app):
    case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])


def test_zz_report():
    import collections
    c = collections.Counter((m, p if len(p) < 50 else p[:50], st) for m, p, q, st, a, ct in Switchboard.seen)
    for k, v in sorted(c.items()): print(k, v)
    print(len(Switchboard.seen))
    print(collections.Counter(a for *_, a, ct in Switchboard.seen))
