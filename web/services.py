"""What the views need, built once per app and reached through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from shared.conversations import Conversations
from shared.messages import MessageLog
from shared.metrics import Counters
from shared.settings import Settings
from shared.store import ConversationStore
from web.queue import Publisher


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    redis: redis.Redis
    store: ConversationStore
    messages: MessageLog
    counters: Counters
    conversations: Conversations
    publisher: Publisher


def services() -> Services:
    found: Services = current_app.extensions["smsproxy"]
    return found
