"""DELETE /v1/participants/<number>: a person erased from the calling client's conversations."""

from __future__ import annotations

import time

import pytest

from shared.domain import Conversation, ConversationStatus, MessageKind, OutboundSms, Participant
from shared.insight_cache import InsightCache
from shared.keys import Keys
from shared.outbound import intro_ids
from shared.wiring import Services
from tests.web.conftest import AUTH
from tests.web.test_clients import RIDES, SHOP, TOKENS

PERSON, OTHER, THIRD = "447400111111", "447400222222", "447400333333"
PROXY_A, PROXY_B = "447700900001", "447700900002"


@pytest.fixture
def svc(fake_redis, make_settings) -> Services:
    return Services.from_settings(make_settings(SMSPROXY_API_TOKENS=TOKENS), fake_redis)


def active(svc: Services, conversation_id: str, client: str, a: str, b: str) -> Conversation:
    """An active conversation of `client` with its routes, an intro and a relayed text."""
    created = time.time()
    pending = Conversation(
        id=conversation_id, participants=(Participant(a, display_name="Rita"), Participant(b)),
        status=ConversationStatus.PENDING, created_at=created, ttl_seconds=3600, client=client,
    )
    svc.conversation_store.add(pending)
    proxies = svc.routes.allocate(conversation_id, ((a, ["GB"]), (b, ["GB"])))
    conversation = svc.conversation_store.transition(conversation_id, lambda c: c.with_status(
        ConversationStatus.ACTIVE, expires_at=created + 3600, participants=(
            Participant(a, proxies[0], "GB", "Rita"), Participant(b, proxies[1], "GB"))))
    assert conversation is not None
    svc.messages.owe(OutboundSms(intro_ids(conversation_id)[0], conversation_id,
                                 MessageKind.INTRO, proxies[0], a, "You are connected"),
                     in_trail=False)
    svc.messages.record_inbound(conversation_id, f"in-{conversation_id}", a, 1, "my flat is 4B")
    relay = f"out-{conversation_id}"
    svc.messages.owe(OutboundSms(relay, conversation_id, MessageKind.RELAY, proxies[1], b,
                                 "my flat is 4B"))
    svc.messages.mark_submitted(relay, ["v-1"], retain_body=True)
    return conversation


def test_erasure_closes_and_removes_the_number_and_bodies(make_client, svc, fake_redis):
    for number in (PROXY_A, PROXY_B):
        svc.inventory.add(number, "GB")
    active(svc, "c" * 32, "rides", PERSON, OTHER)
    InsightCache(fake_redis, 3600).remember(PERSON, "GB")
    client = make_client(SMSPROXY_API_TOKENS=TOKENS, SMSPROXY_RETAIN_BODIES="true")

    answer = client.delete(f"/v1/participants/+{PERSON}", headers=RIDES)
    assert answer.status_code == 200
    # keys: the cached lookup and the person's listing (the pair's sticky proxies are in the
    # conversation's record, redacted with it: no key of their own)
    assert answer.json == {"conversations_closed": 1, "conversations_erased": 1,
                           "messages_erased": 3, "keys_deleted": 2}

    conversation = client.get(f"/v1/conversations/{'c' * 32}", headers=RIDES).json
    assert conversation["status"] == "closed"
    erased, kept = conversation["participants"]
    assert erased["number"] is None and erased["display_name"] is None
    assert kept["number"] == f"+{OTHER}"
    trail = client.get(f"/v1/conversations/{'c' * 32}/messages", headers=RIDES).json["messages"]
    assert len(trail) == 3
    assert all("text" not in entry for entry in trail)
    assert trail[0]["to"] is None and trail[0]["status"] == "failed"  # the intro never goes
    assert trail[1]["from"] is None
    assert trail[2]["to"] == f"+{OTHER}"
    # nothing in the store names the person any more
    for key in fake_redis.keys("*"):
        assert PERSON not in key
        value = fake_redis.dump(key) or b""
        assert PERSON.encode() not in value and b"my flat is 4B" not in value, key
    # the routes went with the close
    assert svc.inventory.size("GB") == 2

    again = client.delete(f"/v1/participants/+{PERSON}", headers=RIDES)
    assert again.json == {"conversations_closed": 0, "conversations_erased": 0,
                          "messages_erased": 0, "keys_deleted": 0}


def test_erasure_leaves_other_clients_conversations_alone(make_client, svc, fake_redis):
    for number in (PROXY_A, PROXY_B):
        svc.inventory.add(number, "GB")
    active(svc, "a" * 32, "rides", PERSON, OTHER)
    active(svc, "b" * 32, "shop", PERSON, THIRD)
    client = make_client(SMSPROXY_API_TOKENS=TOKENS)

    answer = client.delete(f"/v1/participants/+{PERSON}", headers=SHOP)
    assert answer.json["conversations_erased"] == 1
    theirs = client.get(f"/v1/conversations/{'a' * 32}", headers=RIDES).json
    assert theirs["status"] == "active"
    assert theirs["participants"][0]["number"] == f"+{PERSON}"
    listed = client.get(f"/v1/conversations?participant=%2B{PERSON}", headers=RIDES).json
    assert [c["id"] for c in listed["conversations"]] == ["a" * 32]
    assert fake_redis.hexists(Keys().routes(PERSON), "c:" + "a" * 32)  # still listed


@pytest.mark.parametrize("number", ["12", "+44abc", "+" + "1" * 40, "%00"])
def test_erasure_of_a_malformed_number_is_400(make_client, number):
    answer = make_client().delete(f"/v1/participants/{number}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json["error"]["field"] == "number"


def test_erasure_needs_a_token(make_client):
    assert make_client().delete(f"/v1/participants/+{PERSON}").status_code == 401
