"""Scoped clients of /v1: ownership, per-client Idempotency-Keys, rate limits, live caps."""

from __future__ import annotations

import pytest

from shared.conversation_store import ConversationStore
from shared.domain import Conversation, ConversationStatus, Participant
from shared.keys import Keys
from shared.routes import RouteTable
from shared.settings import SettingsError

RIDES_TOKEN = "rides-0123456789abcdef0123456789abcdef"
SHOP_TOKEN = "shop-0123456789abcdef0123456789abcdef"
TOKENS = f"rides:{RIDES_TOKEN},shop:{SHOP_TOKEN}"
RIDES = {"Authorization": f"Bearer {RIDES_TOKEN}"}
SHOP = {"Authorization": f"Bearer {SHOP_TOKEN}"}


def body(second: str = "+447400222222") -> dict:
    return {"participants": [{"number": "+447400111111"}, {"number": second}]}


@pytest.fixture
def two_clients(make_client):
    return make_client(SMSPROXY_API_TOKENS=TOKENS)


def test_another_clients_conversation_does_not_exist_for_it(two_clients, publisher):
    created = two_clients.post("/v1/conversations", json=body(), headers=RIDES)
    assert created.status_code == 202
    conversation_id = created.json["id"]
    base = f"/v1/conversations/{conversation_id}"
    for method, path in [("get", base), ("delete", base), ("get", f"{base}/messages")]:
        answer = getattr(two_clients, method)(path, headers=SHOP)
        assert answer.status_code == 404, (method, path)
        assert answer.json["error"]["code"] == "not_found"
    assert two_clients.get("/v1/conversations", headers=SHOP).json["conversations"] == []
    by_person = two_clients.get("/v1/conversations?participant=%2B447400111111", headers=SHOP)
    assert by_person.json["conversations"] == []
    # ...and it is untouched: the owner still sees it pending, in its lists too
    assert two_clients.get(base, headers=RIDES).json["status"] == "pending"
    listed = two_clients.get("/v1/conversations", headers=RIDES).json["conversations"]
    assert [c["id"] for c in listed] == [conversation_id]
    mine = two_clients.get("/v1/conversations?participant=%2B447400111111", headers=RIDES)
    assert [c["id"] for c in mine.json["conversations"]] == [conversation_id]


def test_idempotency_keys_are_per_client(two_clients, publisher):
    key = {"Idempotency-Key": "order-1"}
    rides = two_clients.post("/v1/conversations", json=body(), headers={**RIDES, **key})
    # the same key, another body, another client: no conflict, a conversation of its own
    shop = two_clients.post("/v1/conversations", json=body("+447400333333"),
                            headers={**SHOP, **key})
    assert (rides.status_code, shop.status_code) == (202, 202)
    assert rides.json["id"] != shop.json["id"]
    again = two_clients.post("/v1/conversations", json=body(), headers={**RIDES, **key})
    assert again.status_code == 202 and again.json["id"] == rides.json["id"]
    conflict = two_clients.post("/v1/conversations", json=body("+447400444444"),
                                headers={**SHOP, **key})
    assert conflict.status_code == 409
    assert len(publisher.published) == 2


def test_rate_limit_answers_429_with_retry_after_per_client(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="3/minute")
    answers = [client.get("/v1/numbers", headers=RIDES) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # the other client has a count of its own
    assert client.get("/v1/numbers", headers=SHOP).status_code == 200


def test_requests_without_a_valid_token_are_limited_by_address(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="2/minute")
    guesses = [client.get("/v1/numbers", headers={"Authorization": f"Bearer guess-{i}"})
               for i in range(3)]
    assert [g.status_code for g in guesses] == [401, 401, 429]
    assert client.get("/v1/numbers", headers=RIDES).status_code == 200


def test_behind_trusted_proxies_requests_are_counted_per_forwarded_address(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="2/minute",
                         SMSPROXY_TRUSTED_PROXIES="1")

    def guess(address: str) -> int:
        return client.get("/v1/numbers", headers={
            "Authorization": "Bearer guess", "X-Forwarded-For": f"203.0.113.9, {address}",
        }).status_code

    assert [guess("198.51.100.1") for _ in range(3)] == [401, 401, 429]
    # another client behind the same proxy has a count of its own; the hop before the one
    # trusted proxy (203.0.113.9, which the client wrote itself) is not believed
    assert guess("198.51.100.2") == 401


def test_forwarded_addresses_are_ignored_without_trusted_proxies(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="2/minute")
    answers = [client.get("/v1/numbers", headers={"Authorization": "Bearer guess",
                                                  "X-Forwarded-For": f"198.51.100.{i}"})
               for i in range(3)]
    # a guesser cannot pick a fresh count per request by writing the header itself
    assert [a.status_code for a in answers] == [401, 401, 429]


def test_webhooks_are_never_rate_limited(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="2/minute")
    inbound = {"msisdn": "447400123456", "to": "447700900100", "text": "hi"}
    answers = [client.post("/webhooks/inbound-sms", data={**inbound, "messageId": f"m-{n}"})
               for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert "X-RateLimit-Limit" not in answers[0].headers
    # ...and they took nothing of /v1's budget, which is still enforced
    limited = [client.get("/v1/numbers", headers=RIDES).status_code for _ in range(3)]
    assert limited == [200, 200, 429]
    # the block list is limited too, on the same count
    blocked = client.get("/v1/blocked-numbers", headers=RIDES)
    assert blocked.status_code == 429
    assert "X-RateLimit-Limit" in client.get("/v1/numbers", headers=RIDES).headers


def test_the_limiters_hooks_run_for_the_limited_blueprints_only(make_client):
    app = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="2/minute").application
    limiter = app.extensions["limiter"]

    def of_limiter(hook):
        return getattr(hook, "__self__", None) in limiter or any(
            arg in limiter for arg in getattr(hook, "args", ()))

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        assert not any(of_limiter(hook) for hook in hooks.get(None, ()))
        for blueprint in ("api", "blocked_numbers"):
            assert any(of_limiter(hook) for hook in hooks[blueprint]), blueprint


def test_rate_limit_none_turns_it_off(make_client):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_API_RATE_LIMIT="none")
    assert {client.get("/v1/numbers", headers=RIDES).status_code for _ in range(150)} == {200}


def test_live_conversation_cap_per_client(make_client, publisher):
    client = make_client(SMSPROXY_API_TOKENS=TOKENS,
                         SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS="2")
    first, second = (
        client.post("/v1/conversations", json=body(n), headers={**RIDES, "Idempotency-Key": k})
        for n, k in [("+447400222222", "a"), ("+447400333333", "b")]
    )
    assert (first.status_code, second.status_code) == (202, 202)
    third = client.post("/v1/conversations", json=body("+447400444444"), headers=RIDES)
    assert third.status_code == 429
    assert third.json["error"]["code"] == "too_many_live_conversations"
    # a retry of a create that got in still answers it, at the cap
    retry = client.post("/v1/conversations", json=body(),
                        headers={**RIDES, "Idempotency-Key": "a"})
    assert retry.status_code == 202 and retry.json["id"] == first.json["id"]
    # the other client is not held back, and closing one frees a place
    assert client.post("/v1/conversations", json=body(), headers=SHOP).status_code == 202
    closed = client.delete(f"/v1/conversations/{first.json['id']}", headers=RIDES)
    assert closed.json["status"] == "closed"
    again = client.post("/v1/conversations", json=body("+447400444444"), headers=RIDES)
    assert again.status_code == 202
    assert len(publisher.published) == 4


def test_a_conversation_that_fails_gives_its_place_back(make_client, fake_redis, make_settings):
    from shared.domain import ConversationStatus
    from shared.wiring import Services

    client = make_client(SMSPROXY_API_TOKENS=TOKENS,
                         SMSPROXY_CLIENT_MAX_LIVE_CONVERSATIONS="1")
    created = client.post("/v1/conversations", json=body(), headers=RIDES)
    svc = Services.from_settings(make_settings(SMSPROXY_API_TOKENS=TOKENS), fake_redis)
    assert svc.conversation_store.live_count("rides") == 1
    svc.conversation_store.finish(created.json["id"], ConversationStatus.FAILED, "x")
    assert svc.conversation_store.live_count("rides") == 0
    assert fake_redis.get(Keys().client_live_count("rides")) == "0"
    assert client.post("/v1/conversations", json=body(), headers=RIDES).status_code == 202


def _legacy_conversation(fake_redis) -> str:
    """A conversation as the release before named clients stored it: with no client."""
    conversation_id = "L" * 16
    ConversationStore(fake_redis, RouteTable(fake_redis)).add(Conversation(
        id=conversation_id,
        participants=(Participant("447400111111"), Participant("447400222222")),
        status=ConversationStatus.PENDING, created_at=1.0, ttl_seconds=3600,
    ))
    return conversation_id


def _sees(client, headers, conversation_id: str) -> tuple[bool, bool]:
    """(reads it, finds it listing by participant)."""
    got = client.get(f"/v1/conversations/{conversation_id}", headers=headers).status_code
    listed = client.get("/v1/conversations?participant=%2B447400111111", headers=headers)
    return got == 200, conversation_id in [c["id"] for c in listed.json["conversations"]]


def test_a_conversation_from_before_clients_is_seen_by_no_client_of_several(
    make_client, fake_redis
):
    app = make_client(SMSPROXY_API_TOKENS=TOKENS)
    conversation_id = _legacy_conversation(fake_redis)
    for headers in (RIDES, SHOP):
        assert _sees(app, headers, conversation_id) == (False, False)
        closing = app.delete(f"/v1/conversations/{conversation_id}", headers=headers)
        assert closing.status_code == 404


def test_a_conversation_from_before_clients_belongs_to_the_legacy_client(make_client, fake_redis):
    app = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_LEGACY_CLIENT="shop")
    conversation_id = _legacy_conversation(fake_redis)
    assert _sees(app, RIDES, conversation_id) == (False, False)
    assert _sees(app, SHOP, conversation_id) == (True, True)
    assert app.delete(f"/v1/conversations/{conversation_id}", headers=RIDES).status_code == 404
    assert app.delete(f"/v1/conversations/{conversation_id}", headers=SHOP).status_code == 200


def test_a_conversation_from_before_clients_belongs_to_the_only_client(make_client, fake_redis):
    app = make_client(SMSPROXY_API_TOKENS=f"rides:{RIDES_TOKEN}")
    conversation_id = _legacy_conversation(fake_redis)
    assert _sees(app, RIDES, conversation_id) == (True, True)


def test_the_legacy_client_must_be_a_client(make_settings):
    with pytest.raises(SettingsError, match="SMSPROXY_LEGACY_CLIENT: taxi is not a client"):
        make_settings(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_LEGACY_CLIENT="taxi")
