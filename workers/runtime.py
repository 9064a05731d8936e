"""Per-process dependencies of the tasks; the Vonage client is per thread (the SDK is not safe)."""

from __future__ import annotations

import threading
from functools import cached_property

import redis
import requests

from shared.conversations import Conversations
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.pool import PoolKeeper, PoolPolicy
from shared.relay import Relay
from shared.settings import Settings
from shared.store import ConversationStore
from shared.sweeper import Sweeper
from shared.vonage_gateway import VonageGateway, VonagePort


class Runtime:
    """Built lazily in each worker process, after the fork, from the one settings object."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
        )

    @cached_property
    def store(self) -> ConversationStore:
        return ConversationStore(self.redis)

    @cached_property
    def messages(self) -> MessageLog:
        return MessageLog(self.redis)

    @cached_property
    def counters(self) -> Counters:
        return Counters(self.redis)

    @cached_property
    def conversations(self) -> Conversations:
        return Conversations(
            self.store, self.messages, self.counters, self.settings, buyer=self.pool_keeper
        )

    @cached_property
    def relay(self) -> Relay:
        return Relay(self.redis, self.store, self.messages, self.counters, self.settings)

    @cached_property
    def pool_keeper(self) -> PoolKeeper:
        return PoolKeeper(
            self.redis, self.store, self.messages, self.counters,
            PoolPolicy.from_settings(self.settings),
        )

    @cached_property
    def sweeper(self) -> Sweeper:
        return Sweeper(self.redis, self.settings)

    def http(self) -> requests.Session:
        """This thread's own HTTP session for callbacks to the marketplace."""
        session: requests.Session | None = getattr(self._local, "http", None)
        if session is None:
            session = requests.Session()
            self._local.http = session
        return session

    def vonage(self) -> VonagePort:
        """This thread's own Vonage client."""
        gateway: VonagePort | None = getattr(self._local, "vonage", None)
        if gateway is None:
            gateway = VonageGateway(self.settings)
            self._local.vonage = gateway
        return gateway
