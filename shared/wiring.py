"""Building the services from settings: one Redis client policy, one construction path.

web, the workers and the operator CLI all build their services here, so a store or a rule
added to the proxy is wired once, and every Redis client behaves the same way on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import redis.backoff
import redis.exceptions
import redis.retry
import redis.sentinel
from redis import Redis

from shared.allowances import Allowances
from shared.amqp_broker import AmqpBroker, is_amqp
from shared.blocked_numbers import BlockedNumbers
from shared.broker_messages import same_redis_database
from shared.console import ConsoleAudit, ConsoleSessions
from shared.conversation_store import ConversationStore
from shared.conversations import Conversations
from shared.idempotency import IdempotencyKeys
from shared.inbound import InboundHandler
from shared.insight_cache import InsightCache
from shared.messages import MessageLog
from shared.metrics import Counters, HistogramBuffer
from shared.opt_outs import OptOuts
from shared.outbox import Outbox
from shared.pool import PoolKeeper, PoolPolicy
from shared.pool_inventory import PoolInventory
from shared.reassembly import Reassembler
from shared.receipts import ReceiptDesk
from shared.relay_caps import DailySends, RelayCaps
from shared.routes import RouteTable
from shared.sending import Sender
from shared.sentinel import SCHEME as SENTINEL_SCHEME
from shared.sentinel import is_sentinel_url, parse_sentinel_url
from shared.settings import Settings

# A worker's commands may wait longer than a webhook's: a worker has nobody waiting on a reply,
# a webhook must answer 503 quickly so that Vonage retries.
WORKER_SOCKET_TIMEOUT_SECONDS = 10.0
WORKER_CONNECT_TIMEOUT_SECONDS = 5.0
MIN_FAIL_FAST_SECONDS = 0.5


def connect_redis(settings: Settings, *, fail_fast: bool) -> redis.Redis:
    """The store's client. `fail_fast` bounds every command by the publish timeout (web)."""
    if fail_fast:
        timeout = max(settings.publish_timeout_seconds, MIN_FAIL_FAST_SECONDS)
        return _client(settings.redis_url, timeout, timeout)
    return _client(settings.redis_url, WORKER_SOCKET_TIMEOUT_SECONDS,
                   WORKER_CONNECT_TIMEOUT_SECONDS)


def broker_redis(settings: Settings) -> redis.Redis | None:
    """A client of the broker when it is a Redis other than the store (the outbox re-publishes
    there); None when the broker is the store's Redis, or not a Redis at all."""
    if same_redis_database(settings.redis_url, settings.broker_url):
        return None
    if urlsplit(settings.broker_url).scheme not in {"redis", "rediss", SENTINEL_SCHEME}:
        return None
    return _client(settings.broker_url, WORKER_SOCKET_TIMEOUT_SECONDS,
                   WORKER_CONNECT_TIMEOUT_SECONDS)


def _client(url: str, timeout: float, connect_timeout: float) -> redis.Redis:
    """Every Redis client of the proxy, with one retry policy.

    Retries are stated, not inherited: redis-py's defaults moved between releases (8.x's
    constructor retries 10 times with backoff). One immediate retry, on a refused or reset
    connection only, rides over a pooled socket that died with a Redis restart. Never on a
    timeout: a hung Redis would cost a second timeout, and the command may yet run (a SET NX or
    an LPUSH twice). Tasks retry through Redis outages at their own level, with backoff.

    Behind Sentinel (`redis+sentinel://`, shared/sentinel.py) the client is redis-py's
    `master_for`: each new connection asks the sentinels where the master is, and a connection
    to a demoted master fails (READONLY becomes a connection error), so the same one retry
    lands on the promoted replica once the sentinels name it. Until then commands fail fast,
    as with a Redis restarting: webhooks answer 503, tasks retry.
    """
    retry = redis.retry.Retry(
        redis.backoff.NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
    )
    if is_sentinel_url(url):
        found = parse_sentinel_url(url)
        sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(found.sentinels),
            # the sentinels' own connections: the same bounds, no password (it is the servers')
            sentinel_kwargs={"socket_timeout": timeout,
                             "socket_connect_timeout": connect_timeout},
        )
        client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
            found.master,
            redis_class=redis.Redis,
            db=found.db,
            username=found.username,
            password=found.password,
            decode_responses=True,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            retry=retry,
        )
        return client
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        retry=retry,
    )


def broker_amqp(settings: Settings) -> AmqpBroker | None:
    """The broker when it is RabbitMQ (the outbox re-publishes through it), else None."""
    if not is_amqp(settings.broker_url):
        return None
    return AmqpBroker(settings.broker_url, WORKER_SOCKET_TIMEOUT_SECONDS)


@dataclass(frozen=True, slots=True)
class Services:
    """Every store and domain service of one process, over one Redis client."""

    settings: Settings
    redis: redis.Redis
    routes: RouteTable
    conversation_store: ConversationStore
    inventory: PoolInventory
    idempotency: IdempotencyKeys
    messages: MessageLog
    counters: Counters
    receipts: ReceiptDesk
    conversations: Conversations
    reassembler: Reassembler
    inbound: InboundHandler
    sender: Sender
    pool_keeper: PoolKeeper
    outbox: Outbox
    opt_outs: OptOuts
    blocked: BlockedNumbers
    console_sessions: ConsoleSessions
    console_audit: ConsoleAudit
    # counts and timings of this process added up and written about once a second (the
    # worker's finished tasks, relays, sends, relay latencies and Vonage call timings: a round
    # trip per task each otherwise; shared/metrics.py)
    tallies: HistogramBuffer

    @classmethod
    def from_settings(
        cls, settings: Settings, client: Redis | None = None, *, fail_fast: bool = False
    ) -> Services:
        """Build everything over `client`, or over a new client made by `connect_redis`."""
        client = client if client is not None else connect_redis(settings, fail_fast=fail_fast)
        keep = settings.retention_seconds
        routes = RouteTable(client)
        store = ConversationStore(client, routes, retention_seconds=keep,
                                  legacy_owner=settings.legacy_owner)
        inventory = PoolInventory(client)
        messages = MessageLog(client, retention_seconds=keep)
        counters = Counters(client)
        tallies = HistogramBuffer(counters)
        idempotency = IdempotencyKeys(client)
        opt_outs = OptOuts(client)
        blocked = BlockedNumbers(client)
        daily = DailySends(client, settings)
        pool_keeper = PoolKeeper(
            client, store, routes, inventory, messages, counters,
            PoolPolicy.from_settings(settings),
        )
        return cls(
            settings=settings,
            redis=client,
            routes=routes,
            conversation_store=store,
            inventory=inventory,
            idempotency=idempotency,
            messages=messages,
            counters=counters,
            receipts=ReceiptDesk(client, messages, counters),
            conversations=Conversations(
                store, routes, inventory, messages, counters, settings,
                InsightCache(client, settings.insight_cache_seconds), idempotency,
                buyer=pool_keeper, blocked=blocked,
            ),
            reassembler=Reassembler(client, counters, settings),
            inbound=InboundHandler(routes, store, messages, counters, settings, opt_outs,
                                   inventory, blocked, Allowances(client),
                                   RelayCaps(client, settings), daily,
                                   client=client, tally=tallies),
            sender=Sender(client, messages, counters, settings, daily=daily, inventory=inventory,
                          tally=tallies),
            pool_keeper=pool_keeper,
            outbox=Outbox(client, settings, broker=broker_redis(settings),
                          publisher=broker_amqp(settings)),
            opt_outs=opt_outs,
            blocked=blocked,
            console_sessions=ConsoleSessions(
                client, lifetime_seconds=settings.console_session_seconds
            ),
            console_audit=ConsoleAudit(client, counters, retention_seconds=keep),
            tallies=tallies,
        )
