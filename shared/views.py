"""The public JSON shape of a conversation: the same for the API and the status callbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.domain import Conversation
from shared.phone import to_e164


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def conversation_view(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "status": conversation.status.value,
        "failure_reason": conversation.failure_reason,
        "participants": [
            {
                "number": to_e164(p.number),
                "proxy_number": to_e164(p.proxy_number) if p.proxy_number else None,
                "display_name": p.display_name,
                "country": p.country,
            }
            for p in conversation.participants
        ],
        "ttl_seconds": conversation.ttl_seconds,
        "callback_url": conversation.callback_url,
        "metadata": dict(conversation.metadata),
        "created_at": iso_time(conversation.created_at),
        "expires_at": iso_time(conversation.expires_at),
    }
