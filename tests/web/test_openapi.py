"""/v1/openapi.json stays true to the routes: every route documented, and schemathesis-generated
requests (valid and invalid) answered only with documented statuses and shapes, never a 5xx."""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from schemathesis.specs.openapi.checks import (
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.api_models import EXAMPLE_ID
from shared.domain import (
    Conversation,
    ConversationStatus,
    MessageKind,
    OutboundSms,
    Participant,
)
from tests.conftest import TEST_CLIENT, build_settings
from tests.doubles import BadPublisher, FakePublisher
from tests.web.conftest import AUTH
from web.app import create_app
from web.openapi import openapi_document
from web.services import services

# A short maximum ttl, so that generated requests meet both ends of the documented range.
# No client rate limit: schemathesis sends hundreds of requests in seconds, and its check that
# an unauthenticated request answers 401 would meet the (documented) 429 instead. The limit has
# its own tests (tests/web/test_clients.py).
SETTINGS = build_settings(SMSPROXY_RETAIN_BODIES="true", SMSPROXY_CALLBACK_SECRET="cb-secret",
                          SMSPROXY_MAX_TTL_SECONDS="7200", SMSPROXY_DEFAULT_TTL_SECONDS="600",
                          SMSPROXY_API_RATE_LIMIT="none", SMSPROXY_OPERATORS=TEST_CLIENT)
# The document as the app under test serves it, with the limits of its settings (schemathesis
# writes into the dict it is given: it gets a copy of its own).
DOCUMENT = openapi_document(SETTINGS)
CREATE_EXAMPLE = DOCUMENT["components"]["schemas"]["CreateConversation"]["examples"][0]
BLOCKED_EXAMPLE = "+447400999999"  # seeded as blocked
PATH_PARAMETERS = {"conversation_id": EXAMPLE_ID, "number": BLOCKED_EXAMPLE}
VALID_BODIES = {
    "/v1/blocked-numbers/{number}":
        DOCUMENT["components"]["schemas"]["BlockNumber"]["examples"][0],
}


class AppUnderTest:
    """The WSGI app schemathesis calls. The schema is built at import time (its operations
    become test parameters), while the app needs per-test fixtures (fakeredis, settings), so
    the schema points at this stand-in and the `app` fixture plugs the real app in."""

    def __init__(self) -> None:
        self.target = None

    def __call__(self, environ, start_response):
        assert self.target is not None, "use the `app` fixture"
        return self.target(environ, start_response)


APP_UNDER_TEST = AppUnderTest()


@contextmanager
def serving(app) -> Iterator[None]:
    APP_UNDER_TEST.target = app
    try:
        yield
    finally:
        APP_UNDER_TEST.target = None


SCHEMA = schemathesis.openapi.from_dict(openapi_document(SETTINGS))
SCHEMA.app = APP_UNDER_TEST
# Every default check stays on (no 5xx; documented statuses, headers and bodies; invalid input
# rejected; undocumented methods 405; auth not ignored) but two that judge intended behaviour:
# - positive_data_acceptance: a schema cannot tell a possible phone number from any string,
#   so a schema-valid request may rightly answer 400;
# - use_after_free: DELETE closes a conversation, which stays readable in its closed state.
SCHEMA.config.checks.update(excluded_check_names=["positive_data_acceptance", "use_after_free"])

# Bounded and repeatable: the same inputs every run, no example database.
BOUNDED = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    # The app (and its fakeredis) deliberately lives across a test's examples, as a server
    # would: a conversation created by one example may be fetched or closed by another.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def seed(app) -> None:
    """A conversation under the documented example id, with a full audit trail, and a pool
    number: so that the 200 answers (not only the 404s) are checked against their schemas."""
    with app.app_context():
        svc = services()
    messages = svc.messages
    created = time.time()
    svc.conversation_store.add(Conversation(
        id=EXAMPLE_ID,
        participants=(
            Participant(number="447400123456", proxy_number="447700900001", country="GB",
                        display_name="Rita"),
            Participant(number="447400654321", proxy_number="447700900002", country="GB"),
        ),
        status=ConversationStatus.ACTIVE,
        created_at=created,
        ttl_seconds=3600,
        expires_at=created + 3600,
        callback_url="https://example.com/events",
        metadata={"order": 1234},
    ))
    messages.record_inbound(EXAMPLE_ID, "in-1", "447400123456", 1, "hello")
    for index, outcome in enumerate(["queued", "submitted", "failed"]):
        outbound_id = f"out-{index}"
        messages.owe(OutboundSms(outbound_id, EXAMPLE_ID, MessageKind.RELAY, "447700900002",
                                 "447400654321", "hello"))
        if outcome == "submitted":
            messages.mark_submitted(outbound_id, ["v1", "v2"], retain_body=True)
        elif outcome == "failed":
            messages.mark_failed(outbound_id, "4", "invalid credentials", retain_body=False)
    svc.inventory.add("447700900001", "GB", monthly_cost="0.90")
    svc.inventory.add("447700900002", "GB")
    svc.blocked.block(BLOCKED_EXAMPLE.lstrip("+"), created, "seeded")
    svc.blocked.block("447400888888", created)


@pytest.fixture
def app(fake_redis):
    app = create_app(SETTINGS, redis_client=fake_redis, publisher=FakePublisher())
    seed(app)
    with serving(app):
        yield app


def flask_path(rule: str) -> str:
    """/v1/conversations/<conversation_id> -> /v1/conversations/{conversation_id}"""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def documented_operations() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_served_document_is_valid_openapi(app):
    served = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    assert served.raw_schema == DOCUMENT
    served.validate()  # against the OpenAPI 3.1 meta-schema; raises on any mistake
    loaded = {result.ok().label for result in served.get_all_operations()}  # raises if unusable
    # Loaded from its own URL, schemathesis leaves the document's operation out.
    assert loaded == {f"{m.upper()} {p}" for p, m in documented_operations()} - {
        "GET /v1/openapi.json"
    }


def test_document_needs_no_token_and_is_json(app):
    response = app.test_client().get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.is_json and response.json["openapi"].startswith("3.")


def test_every_v1_route_is_documented_and_every_documented_route_exists(app):
    routes = {
        (flask_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    assert routes == documented_operations()


def test_every_operation_but_the_document_itself_documents_401_and_answers_it(app):
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/openapi.json":
            continue
        assert "401" in operation.definition.raw["responses"], operation.label
        case = operation.Case(path_parameters=PATH_PARAMETERS,
                              body={"participants": []}, media_type="application/json")
        for headers in [{}, {"Authorization": "Bearer wrong-token"}]:
            response = case.call(headers=headers)
            assert response.status_code == 401, operation.label
            case.validate_response(response, checks=[status_code_conformance,
                                                     response_headers_conformance,
                                                     response_schema_conformance])


def test_every_operation_answers_the_documented_503_when_redis_is_down():
    # Nothing listens on the discard port; no retries, so every Redis call fails at once.
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))
    app = create_app(SETTINGS, redis_client=dead, publisher=FakePublisher())
    with serving(app):
        for result in SCHEMA.get_all_operations():
            operation = result.ok()
            if operation.path == "/v1/openapi.json":
                continue
            case = operation.Case(path_parameters=PATH_PARAMETERS,
                                  body=VALID_BODIES.get(operation.path, CREATE_EXAMPLE),
                                  media_type="application/json")
            response = case.call(headers=AUTH)
            assert response.status_code == 503, operation.label
            case.validate_response(response, checks=[status_code_conformance,
                                                     response_headers_conformance,
                                                     response_schema_conformance])


def test_create_answers_the_documented_503_when_the_broker_is_down(fake_redis):
    app = create_app(SETTINGS, redis_client=fake_redis, publisher=BadPublisher())
    with serving(app):
        case = SCHEMA["/v1/conversations"]["POST"].Case(body=CREATE_EXAMPLE,
                                                         media_type="application/json")
        response = case.call(headers=AUTH)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "queue_unavailable"
        case.validate_response(response, checks=[status_code_conformance,
                                                 response_headers_conformance,
                                                 response_schema_conformance])


def test_create_answers_the_documented_413_for_a_body_over_64_kib(app):
    case = SCHEMA["/v1/conversations"]["POST"].Case(
        body={**CREATE_EXAMPLE, "metadata": {"pad": "x" * 70_000}}, media_type="application/json"
    )
    response = case.call(headers=AUTH)
    assert response.status_code == 413
    case.validate_response(response, checks=[status_code_conformance,
                                             response_schema_conformance])


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "\u00b2", "\u0663", "1" * 5000])
def test_limit_outside_1_to_100_answers_the_documented_400(app, limit):
    # "²".isdigit() and 5000 ASCII digits once reached int() and answered 500.
    case = SCHEMA["/v1/conversations"]["GET"].Case(query={"limit": limit})
    response = case.call(headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "limit"
    case.validate_response(response, checks=[status_code_conformance,
                                             response_schema_conformance])


@SCHEMA.auth()
class BearerToken:
    """The token every generated request carries (schemathesis' own auth checks still send
    requests without it, or with a wrong one, and expect 401)."""

    def get(self, case, ctx):
        return AUTH["Authorization"]

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": data}


@SCHEMA.parametrize()
@BOUNDED
def test_generated_requests_are_answered_as_documented(case, app):
    case.call_and_validate()


class FromSeededState(SCHEMA.as_state_machine()):
    """Walks the 202's links: create, then get, close or list the messages of what it made."""

    def setup(self) -> None:
        # Each scenario starts from the same store, or a replay (shrinking, derandomized runs)
        # would meet the idempotency keys and conversations of earlier scenarios and take
        # another path.
        app = APP_UNDER_TEST.target
        with app.app_context():
            services().redis.flushall()
        seed(app)


def test_linked_sequences_are_answered_as_documented(app):
    FromSeededState.run(settings=settings(BOUNDED, max_examples=30, stateful_step_count=6))


def test_the_document_states_the_ttl_range_and_default_the_api_applies(app):
    # The one rule stated twice (validated with the settings as context, documented from the
    # settings): both must follow the settings.
    ttl = DOCUMENT["components"]["schemas"]["CreateConversation"]["properties"]["ttl_seconds"]
    assert (ttl["minimum"], ttl["maximum"], ttl["default"]) == (60, 7200, 600)
    client = app.test_client()
    body = {"participants": CREATE_EXAMPLE["participants"]}
    for value, status in [(59, 400), (60, 202), (7200, 202), (7201, 400)]:
        response = client.post("/v1/conversations", json={**body, "ttl_seconds": value},
                               headers=AUTH)
        assert response.status_code == status, value
    assert client.post("/v1/conversations", json=body, headers=AUTH).json["ttl_seconds"] == 600
    assert "maximum" not in openapi_document()["components"]["schemas"]["CreateConversation"][
        "properties"]["ttl_seconds"]
