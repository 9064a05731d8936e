"""Behind Sentinel (real processes: a master, a replica fed through a relay the test holds,
three sentinels): the store's client, and WAIT before a webhook is acknowledged and before a
send is claimed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from devtools.redis_sentinel import SentinelCluster, SentinelUnavailable
from shared.jobs import TaskName
from shared.keys import Keys
from shared.messages import UNREPLICATED, MessageLog
from shared.settings import Settings
from shared.wiring import connect_redis
from web.queue import Publisher, QueueUnavailable, WebhookOutcome

pytestmark = pytest.mark.integration

PAYLOAD = {"messageId": "m1", "msisdn": "447400123456", "text": "hi"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    try:
        with SentinelCluster(tmp_path_factory.mktemp("sentinel")) as running:
            yield running
    except SentinelUnavailable as exc:
        pytest.skip(f"redis-server cannot run as a sentinel here: {exc}")


@pytest.fixture
def held(cluster: SentinelCluster) -> Iterator[SentinelCluster]:
    """The replica gets nothing (the master's writes pile up in the relay) until the test ends."""
    assert cluster.relay is not None
    cluster.relay.hold()
    try:
        yield cluster
    finally:
        cluster.relay.release()


def _settings(cluster: SentinelCluster, replicas: int) -> Settings:
    return Settings.from_env({"REDIS_URL": cluster.url,
                              "SMSPROXY_MIN_REPLICAS_ACKED": str(replicas),
                              "SMSPROXY_PUBLISH_TIMEOUT_SECONDS": "0.5"})


def test_the_store_and_the_broker_are_one_master_behind_the_sentinels(cluster):
    settings = _settings(cluster, 1)
    store = connect_redis(settings, fail_fast=True)
    # the client found the master through the sentinels
    assert store.info("replication")["role"] == "master"
    door = Publisher(settings, store)
    assert door.atomic_webhooks  # the one-step enqueue holds behind Sentinel
    assert door.enqueue_webhook("inbound", "sent-once", TaskName.RELAY_INBOUND, PAYLOAD,
                                60) is WebhookOutcome.QUEUED


def test_a_webhook_whose_job_no_replica_has_is_not_acknowledged(cluster, held):
    settings = _settings(cluster, 1)
    door = Publisher(settings, connect_redis(settings, fail_fast=True))
    with pytest.raises(QueueUnavailable) as raised:
        door.enqueue_webhook("inbound", "held-1", TaskName.RELAY_INBOUND, PAYLOAD, 60)
    # the master has it: the retry must find it a duplicate, not queue it again
    assert raised.value.maybe_published
    assert cluster.relay is not None
    cluster.relay.release()
    # the retry is acknowledged once the replica has the first attempt's job
    assert door.enqueue_webhook("inbound", "held-1", TaskName.RELAY_INBOUND, PAYLOAD,
                                60) is WebhookOutcome.DUPLICATE


def test_without_the_setting_a_held_replica_changes_nothing(cluster, held):
    settings = _settings(cluster, 0)
    door = Publisher(settings, connect_redis(settings, fail_fast=True))
    assert door.enqueue_webhook("inbound", "held-2", TaskName.RELAY_INBOUND, PAYLOAD,
                                60) is WebhookOutcome.QUEUED


def test_a_send_claim_no_replica_has_is_given_back(cluster, held):
    store = connect_redis(_settings(cluster, 1), fail_fast=False)
    log = MessageLog(store, retention_seconds=60)
    claim = log.claim_send("out-held", 30, replicas=1, wait_ms=200)
    assert not claim.acquired and claim.state == UNREPLICATED
    assert store.get(Keys().send_claim("out-held")) is None  # a retry may claim it
    assert cluster.relay is not None
    cluster.relay.release()
    assert log.claim_send("out-held", 30, replicas=1, wait_ms=2000).acquired


def test_a_job_published_with_its_outbox_entry_waits_for_a_replica_too(cluster, held):
    settings = _settings(cluster, 1)
    door = Publisher(settings, connect_redis(settings, fail_fast=True))
    # a create's job: a 503 then fails the conversation (web/api.py), and the client retries
    with pytest.raises(QueueUnavailable) as raised:
        door.publish(TaskName.CREATE_CONVERSATION, "c-held", job="create:c-held")
    assert raised.value.maybe_published
    with pytest.raises(QueueUnavailable):
        door.publish(TaskName.MAINTAIN_POOL)  # no outbox entry: the push alone, then WAIT
    assert cluster.relay is not None
    cluster.relay.release()
    door.publish(TaskName.CREATE_CONVERSATION, "c-held-2", job="create:c-held-2")


def test_webhooks_follow_a_failover_to_the_promoted_master(tmp_path):
    """The enqueue's own connection (shared/script_batch.py) asks the sentinels again when it
    reconnects: reconnected to the dead master's address, it would refuse every webhook, and
    once that host came back (without the script), answer NOSCRIPT for ever."""
    try:
        with SentinelCluster(tmp_path) as cluster:
            _enqueue_across_a_failover(cluster)
    except SentinelUnavailable as exc:
        pytest.skip(f"redis-server cannot run as a sentinel here: {exc}")


def _enqueue_across_a_failover(cluster: SentinelCluster) -> None:
    settings = _settings(cluster, 0)
    door = Publisher(settings, connect_redis(settings, fail_fast=True))
    assert door.enqueue_webhook("inbound", "before", TaskName.RELAY_INBOUND, PAYLOAD,
                                60) is WebhookOutcome.QUEUED
    cluster.kill_master()
    cluster.wait_for_promotion()
    outcomes = []
    for attempt in range(20):  # Vonage's retries, as the clients find the new master
        try:
            outcomes.append(door.enqueue_webhook(
                "inbound", "after", TaskName.RELAY_INBOUND, PAYLOAD, 60))
            break
        except QueueUnavailable:
            time.sleep(0.05 * attempt)
    assert outcomes == [WebhookOutcome.QUEUED]
    promoted = connect_redis(settings, fail_fast=True)
    assert int(promoted.info("server")["tcp_port"]) == cluster.replica_port
    assert promoted.get(Keys().dedupe("inbound", "after")) == "queued"
