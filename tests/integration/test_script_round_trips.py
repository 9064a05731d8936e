"""Scripts queued in pipelines and transactions (shared/scripts.py) on a real Redis: they run,
and no SCRIPT EXISTS round trip goes before them, even on a Redis whose script cache is empty."""

from __future__ import annotations

import pytest
import redis

from shared.broker_messages import BrokerMessage
from shared.conversation_store import ConversationStore
from shared.domain import ConversationStatus
from shared.keys import Keys
from shared.outbox import Outbox
from shared.routes import RouteTable
from shared.settings import Settings
from tests.shared.test_conversation_record import conversation, pending_of

pytestmark = pytest.mark.integration

KEYS = Keys()


def script_exists_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


def test_a_conversations_changes_take_no_script_exists(real_redis):
    store = ConversationStore(real_redis, RouteTable(real_redis))
    real_redis.script_flush()  # as after a restart or a failover: no script cached
    before = script_exists_calls(real_redis)
    store.add(pending_of("newnewnewnewnew1"), max_live=3)
    store.add(pending_of("newnewnewnewnew2"), max_live=3)
    store.discard(pending_of("newnewnewnewnew2"))  # its place given back, in one transaction
    active = conversation(id="newnewnewnewnew1")
    assert store.transition(active.id, lambda _c: active) == active  # the indexes' life bumped
    assert store.extend(active.id, active.expires_at + 60) is not None
    store.finish(active.id, ConversationStatus.CLOSED)  # counted as ended, in the transaction
    assert script_exists_calls(real_redis) == before
    assert store.live_count("rides") == 0
    assert real_redis.get(KEYS.client_live_count("rides")) == "0"
    assert store.get(active.id).status is ConversationStatus.CLOSED


def test_a_job_published_with_a_wait_takes_no_script_exists(real_redis, redis_url):
    outbox = Outbox(real_redis, Settings.from_env({"REDIS_URL": redis_url}))
    real_redis.script_flush()
    before = script_exists_calls(real_redis)
    message = BrokerMessage("inbound", '{"job": 1}')
    # no replica here: the WAIT answers 0 after its millisecond
    assert outbox.publish("job:1", message, replicas=1, wait_ms=1) == 0
    assert script_exists_calls(real_redis) == before
    assert real_redis.lrange("inbound", 0, -1) == ['{"job": 1}']
    assert real_redis.hexists(KEYS.pending_jobs(), "job:1")
