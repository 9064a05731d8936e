import pytest

from shared.domain import Conversation, ConversationStatus, Participant
from shared.jobs import TaskName
from shared.keys import Keys
from shared.wiring import Services
from tests.conftest import TEST_CLIENT
from tests.doubles import BadPublisher
from tests.web.conftest import AUTH

IN_GB = ("GB",)
BODY = {"participants": [{"number": "+447400123456", "display_name": "Rider"},
                         {"number": "+44 7400 654321"}], "ttl_seconds": 3600}


def test_create_returns_202_pending_and_enqueues(client, publisher):
    response = client.post("/v1/conversations", json=BODY, headers=AUTH)
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "pending"
    assert [p["number"] for p in body["participants"]] == ["+447400123456", "+447400654321"]
    assert publisher.published == [(TaskName.CREATE_CONVERSATION, body["id"])]
    fetched = client.get(f"/v1/conversations/{body['id']}", headers=AUTH)
    assert fetched.status_code == 200 and fetched.json["id"] == body["id"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dGVzdA=="},
     {"Authorization": "Bearer "}],
)
def test_missing_or_wrong_token_is_401(client, headers):
    for method, path in [("post", "/v1/conversations"), ("get", "/v1/conversations/" + "a" * 32),
                         ("delete", "/v1/conversations/" + "a" * 32), ("get", "/v1/numbers")]:
        response = getattr(client, method)(path, json=BODY, headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "body"),
        ({"participants": "x"}, "participants"),
        ({"participants": [{"number": "+447400123456"}]}, "participants"),
        ({"participants": [{"number": "+447400123456"}, {"number": "07400 654321"}]},
         "participants[1].number"),
        ({"participants": [{"number": "+447400123456"}, {"number": 447400654321}]},
         "participants[1].number"),
        ({"participants": [{"number": "+447400123456"}, {"number": "+447400123456"}]},
         "participants"),
        ({**BODY, "ttl_seconds": "1h"}, "ttl_seconds"),
        ({**BODY, "ttl_seconds": True}, "ttl_seconds"),
        ({**BODY, "ttl_seconds": 1}, "ttl_seconds"),
        ({**BODY, "callback_url": "ftp://x"}, "callback_url"),
        ({**BODY, "metadata": {"k": "v" * 5000}}, "metadata"),
        ({**BODY, "metadata": []}, "metadata"),
        ({**BODY, "colour": "red"}, "colour"),
        ({"participants": [{"number": "+447400123456", "age": 3}, {"number": "+447400654321"}]},
         "participants[0].age"),
        ({"participants": [{"number": "+447400123456", "display_name": ""},
                           {"number": "+447400654321"}]}, "participants[0].display_name"),
    ],
)
def test_bad_create_requests_are_400_naming_the_field(client, publisher, body, field):
    response = client.post("/v1/conversations", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert publisher.published == []


def test_malformed_json_is_400(client):
    response = client.post("/v1/conversations", data="{oops", headers={
        **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("conversation_id", ["a" * 32, "nope", "../../etc"])
def test_unknown_conversation_is_404(client, conversation_id):
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/v1/conversations/{conversation_id}", headers=AUTH)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"
    messages = client.get(f"/v1/conversations/{conversation_id}/messages", headers=AUTH)
    assert messages.status_code == 404


def test_idempotency_key_same_body_same_conversation_different_body_409(client, publisher):
    headers = {**AUTH, "Idempotency-Key": "order-42"}
    first = client.post("/v1/conversations", json=BODY, headers=headers)
    again = client.post("/v1/conversations", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json["id"] == again.json["id"]
    other = client.post("/v1/conversations", json={**BODY, "ttl_seconds": 60}, headers=headers)
    assert other.status_code == 409
    assert len(publisher.published) == 1


def test_broker_down_on_create_is_503_and_nothing_is_left_pending(make_client, fake_redis,
                                                                   make_settings):
    client = make_client(publisher=BadPublisher())
    response = client.post("/v1/conversations", json=BODY, headers=AUTH)
    assert response.status_code == 503
    svc = Services.from_settings(make_settings(), fake_redis)
    ids = fake_redis.zrange(Keys().client_conversations(TEST_CLIENT), 0, -1)
    assert [svc.conversation_store.get(i).status for i in ids] == [ConversationStatus.FAILED]


def test_delete_closes_and_frees_routes(client, fake_redis, make_settings):
    svc = Services.from_settings(make_settings(), fake_redis)
    svc.inventory.add("447700900100", "GB")
    a, b = "447400123456", "447400654321"
    svc.conversation_store.add(Conversation("b" * 32, (Participant(a), Participant(b)),
                           ConversationStatus.PENDING, 1.0, 3600))
    pa, pb = svc.routes.allocate("b" * 32, ((a, IN_GB), (b, IN_GB)))
    svc.conversation_store.transition("b" * 32, lambda c: c.with_status(
        ConversationStatus.ACTIVE, participants=(Participant(a, pa), Participant(b, pb)),
        expires_at=2e9))
    response = client.delete(f"/v1/conversations/{'b' * 32}", headers=AUTH)
    assert response.status_code == 200 and response.json["status"] == "closed"
    assert svc.routes.find(a, pa) is None
    again = client.delete(f"/v1/conversations/{'b' * 32}", headers=AUTH)
    assert again.status_code == 200 and again.json["status"] == "closed"
    numbers = client.get("/v1/numbers", headers=AUTH).json["numbers"]
    assert numbers == [{"number": "+447700900100", "country": "GB", "live_routes": 0,
                        "state": "active", "monthly_cost": None}]


def test_ops_endpoints(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/webhooks/inbound-sms", data={"msisdn": "447400123456", "to": "447700900100",
                                               "messageId": "m"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'smsproxy_webhooks_total{kind="inbound",outcome="accepted"} 1.0' in text


def test_unknown_path_and_method_are_json(client):
    assert client.get("/nope").json["error"]["code"] == "not_found"
    response = client.put("/v1/conversations", headers=AUTH)
    assert response.status_code == 405 and response.is_json


def test_list_conversations_filters_and_cursor(client):
    ids = []
    for i in range(5):
        body = {"participants": [{"number": "+447400123456"},
                                 {"number": f"+4474006543{i:02d}"}]}
        ids.append(client.post("/v1/conversations", json=body, headers=AUTH).json["id"])
    first = client.get("/v1/conversations?limit=2", headers=AUTH).json
    assert len(first["conversations"]) == 2 and first["next_cursor"]
    rest = client.get(f"/v1/conversations?limit=10&cursor={first['next_cursor']}",
                      headers=AUTH).json
    listed = [c["id"] for c in first["conversations"] + rest["conversations"]]
    assert sorted(listed) == sorted(ids)
    assert rest["next_cursor"] is None
    mine = client.get("/v1/conversations?participant=%2B447400654302", headers=AUTH).json
    assert [c["id"] for c in mine["conversations"]] == [ids[2]]
    pending = client.get("/v1/conversations?status=pending", headers=AUTH).json
    assert len(pending["conversations"]) == 5
    assert client.get("/v1/conversations?status=closed", headers=AUTH).json["conversations"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("participant=12", "participant"), ("limit=0", "limit"),
     ("limit=abc", "limit"), ("limit=101", "limit"), ("cursor=!!", "cursor"),
     ("cursor=bm9wZQ", "cursor"), ("sort=asc", "sort")],
)
def test_list_conversations_bad_query_is_400(client, query, field):
    response = client.get(f"/v1/conversations?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_metadata_with_nan_is_refused_and_whole_float_ttl_is_accepted(client):
    body = ('{"participants":[{"number":"+447400123456"},{"number":"+447400123457"}],'
            '"metadata":{"a":NaN}}')
    response = client.post("/v1/conversations", data=body,
                           headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["field"] == "metadata"
    ok = client.post("/v1/conversations", json={**BODY, "ttl_seconds": 3600.0}, headers=AUTH)
    assert ok.status_code == 202 and ok.json["ttl_seconds"] == 3600


@pytest.mark.parametrize("intro_text", [
    "{counterpart:>99999999}" * 20, "Hello {0}", "Hi {counterpart!r}", "{}", "a } b",
])
def test_an_intro_text_with_other_braces_is_400_naming_it(client, publisher, intro_text):
    response = client.post("/v1/conversations", json={**BODY, "intro_text": intro_text},
                           headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "intro_text"
    assert "{counterpart}" in response.json["error"]["message"]
    assert publisher.published == []


def test_an_intro_text_with_bare_counterparts_is_accepted(client):
    body = {**BODY, "intro_text": "Your driver {counterpart} ({counterpart}) is here"}
    assert client.post("/v1/conversations", json=body, headers=AUTH).status_code == 202


@pytest.mark.parametrize("url", [
    "http://market.example/events",  # plain http without the development setting
    "https://127.0.0.1/events", "https://[::1]/events", "https://169.254.169.254/latest",
    "https://10.0.0.8/events", "https://[fd00::8]/events", "https://[::ffff:127.0.0.1]/events",
    "https://2130706433/events", "https://user:pw@market.example/events",
    "https://localhost/events",
])
def test_a_callback_url_to_a_forbidden_destination_is_400_naming_it(make_client, publisher, url):
    client = make_client(SMSPROXY_CALLBACK_SECRET="cb")
    response = client.post("/v1/conversations", json={**BODY, "callback_url": url}, headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "callback_url"
    assert publisher.published == []


def test_a_public_https_callback_url_is_accepted(make_client):
    client = make_client(SMSPROXY_CALLBACK_SECRET="cb")
    body = {**BODY, "callback_url": "https://market.example/events"}
    assert client.post("/v1/conversations", json=body, headers=AUTH).status_code == 202


def test_the_mask_chosen_at_create_is_in_the_conversation_json(client, publisher):
    body = {**BODY, "mask": ["email", "link"]}
    created = client.post("/v1/conversations", json=body, headers=AUTH)
    assert created.status_code == 202 and created.json["mask"] == ["email", "link"]
    default = client.post("/v1/conversations", json=BODY, headers=AUTH)
    assert default.json["mask"] == ["email", "phone"]
    bad = client.post("/v1/conversations", json={**BODY, "mask": ["fax"]}, headers=AUTH)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "mask"


def test_a_participants_opt_out_shows_in_the_conversation_and_the_list(client, fake_redis,
                                                                       make_settings):
    from shared.opt_outs import ParticipantState

    svc = Services.from_settings(make_settings(), fake_redis)
    a, b = "447400123456", "447400654321"
    svc.conversation_store.add(Conversation(
        "b" * 32, (Participant(a, "447700900100"), Participant(b, "447700900101")),
        ConversationStatus.ACTIVE, 1.0, 3600, expires_at=2e9, client=TEST_CLIENT))
    svc.opt_outs.change(b, "447700900101", ParticipantState.OPTED_OUT, "stop-1")
    got = client.get(f"/v1/conversations/{'b' * 32}", headers=AUTH).json
    assert [p["opted_out"] for p in got["participants"]] == [False, True]
    listed = client.get("/v1/conversations", headers=AUTH).json["conversations"]
    assert [p["opted_out"] for p in listed[0]["participants"]] == [False, True]
