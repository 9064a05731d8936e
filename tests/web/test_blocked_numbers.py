"""/v1/blocked-numbers through Flask's test client, and the create refusals they lead to."""

import pytest

from tests.conftest import TEST_CLIENT
from tests.web.conftest import AUTH

NUMBER = "+447400123456"
OTHER = "+447400654321"
CREATE = {"participants": [{"number": NUMBER}, {"number": OTHER}]}


@pytest.fixture
def client(make_client):
    """The test client is an operator here: the block list is the whole deployment's."""
    return make_client(SMSPROXY_OPERATORS=TEST_CLIENT)


def test_only_operators_may_read_or_change_the_block_list(make_client):
    other = make_client()  # the same client, not named an operator
    for method, path in [("put", f"/v1/blocked-numbers/{NUMBER}"),
                         ("get", f"/v1/blocked-numbers/{NUMBER}"),
                         ("delete", f"/v1/blocked-numbers/{NUMBER}"),
                         ("get", "/v1/blocked-numbers")]:
        answer = getattr(other, method)(path, headers=AUTH)
        assert answer.status_code == 403, (method, path)
        assert answer.json["error"]["code"] == "forbidden"


def test_put_get_delete_round_trip(client):
    assert client.get(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 404
    put = client.put(f"/v1/blocked-numbers/{NUMBER}", json={"reason": "spam"}, headers=AUTH)
    assert put.status_code == 200
    assert put.json["number"] == NUMBER and put.json["reason"] == "spam"
    assert put.json["blocked_at"].endswith("Z")
    got = client.get(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH)
    assert got.status_code == 200 and got.json == put.json
    assert client.delete(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 204
    assert client.get(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 404
    # unblocking again is no error
    assert client.delete(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 204


def test_put_without_a_body_blocks_with_no_reason_and_a_repeat_keeps_the_first_time(client):
    first = client.put(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH)
    assert first.status_code == 200 and first.json["reason"] is None
    again = client.put(f"/v1/blocked-numbers/{NUMBER}", json={"reason": "again"}, headers=AUTH)
    assert again.json["blocked_at"] == first.json["blocked_at"]
    assert again.json["reason"] == "again"


def test_a_url_encoded_plus_names_the_same_number(client):
    client.put("/v1/blocked-numbers/%2B447400123456", headers=AUTH)
    assert client.get(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 200


@pytest.mark.parametrize("number", ["447400123456", "+44 7400 123456", "+0447400123456",
                                    "+4474001234567890", "+44740012345x", "+12"])
def test_a_number_not_in_e164_is_400_naming_it(client, number):
    for method in ("put", "get", "delete"):
        response = getattr(client, method)(f"/v1/blocked-numbers/{number}", headers=AUTH)
        assert response.status_code == 400, (method, number)
        assert response.json["error"]["field"] == "number"


@pytest.mark.parametrize(("body", "field"), [
    ({"reason": ""}, "reason"),
    ({"reason": "x" * 201}, "reason"),
    ({"reason": "two\nlines"}, "reason"),
    ({"reason": 3}, "reason"),
    ({"why": "x"}, "why"),
    ([1], "body"),
])
def test_a_bad_body_is_400_naming_the_field(client, body, field):
    response = client.put(f"/v1/blocked-numbers/{NUMBER}", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert client.get(f"/v1/blocked-numbers/{NUMBER}", headers=AUTH).status_code == 404


def test_a_body_that_is_not_json_is_400(client):
    response = client.put(f"/v1/blocked-numbers/{NUMBER}", data="reason=spam",
                          content_type="application/x-www-form-urlencoded", headers=AUTH)
    assert response.status_code == 400 and response.json["error"]["field"] == "body"


def test_every_operation_needs_the_token(client):
    for method, path in [("put", f"/v1/blocked-numbers/{NUMBER}"),
                         ("get", f"/v1/blocked-numbers/{NUMBER}"),
                         ("delete", f"/v1/blocked-numbers/{NUMBER}"),
                         ("get", "/v1/blocked-numbers")]:
        assert getattr(client, method)(path).status_code == 401


def test_the_list_pages_in_number_order_with_a_cursor(client):
    numbers = [f"+4474001000{i:02d}" for i in range(5)]
    for number in reversed(numbers):
        client.put(f"/v1/blocked-numbers/{number}", headers=AUTH)
    seen, cursor = [], None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/blocked-numbers", query_string=query, headers=AUTH).json
        seen += [entry["number"] for entry in page["blocked_numbers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == numbers


@pytest.mark.parametrize(("query", "field"), [({"limit": "0"}, "limit"),
                                              ({"cursor": "nope"}, "cursor"),
                                              ({"colour": "red"}, "colour")])
def test_a_bad_list_query_is_400(client, query, field):
    response = client.get("/v1/blocked-numbers", query_string=query, headers=AUTH)
    assert response.status_code == 400 and response.json["error"]["field"] == field


def test_a_blocked_number_cannot_join_a_new_conversation(client, publisher):
    client.put(f"/v1/blocked-numbers/{OTHER}", headers=AUTH)
    response = client.post("/v1/conversations", json=CREATE, headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "participants[1].number"
    assert "blocked" in response.json["error"]["message"]
    assert publisher.published == []
    client.delete(f"/v1/blocked-numbers/{OTHER}", headers=AUTH)
    assert client.post("/v1/conversations", json=CREATE, headers=AUTH).status_code == 202


def test_one_of_the_accounts_numbers_cannot_be_a_participant(client, publisher):
    with client.application.app_context():
        from web.services import services

        services().inventory.add(NUMBER.lstrip("+"), "GB")
    response = client.post("/v1/conversations", json=CREATE, headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "participants[0].number"
    assert "own numbers" in response.json["error"]["message"]
    assert publisher.published == []
