"""The public JSON shapes: a conversation (the same for the API and the status callbacks) and
its audit trail's entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.blocked_numbers import BlockedNumber
from shared.domain import ERASED, Conversation
from shared.messages import TrailEntry
from shared.phone import to_e164


def _number(msisdn: str) -> str | None:
    """E.164, or null for a person whose data was erased."""
    return None if msisdn == ERASED else to_e164(msisdn)


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def conversation_view(
    conversation: Conversation, opted_out: tuple[bool, ...]
) -> dict[str, Any]:
    """`opted_out`: for each participant, whether they opted out of their proxy number
    (shared/opt_outs.py `OptOuts.of`)."""
    return {
        "id": conversation.id,
        "status": conversation.status.value,
        "failure_reason": conversation.failure_reason,
        "participants": [
            {
                "number": _number(p.number),
                "proxy_number": to_e164(p.proxy_number) if p.proxy_number else None,
                "display_name": p.display_name,
                "country": p.country,
                "opted_out": out,
            }
            for p, out in zip(conversation.participants, opted_out, strict=True)
        ],
        "mask": sorted(conversation.mask) if conversation.mask is not None else None,
        "ttl_seconds": conversation.ttl_seconds,
        "callback_url": conversation.callback_url,
        "metadata": dict(conversation.metadata),
        "created_at": iso_time(conversation.created_at),
        "expires_at": iso_time(conversation.expires_at),
    }


def trail_entry_view(entry: TrailEntry, *, with_text: bool) -> dict[str, Any]:
    """One audit-trail entry; the body only when bodies are retained."""
    rendered: dict[str, Any] = {
        "id": entry.id,
        "direction": "inbound" if entry.record == "in" else "outbound",
    }
    if entry.record == "in":
        rendered.update({
            "from": _number(entry.sender),
            "parts": entry.parts,
            "received_at": iso_time(entry.received_at),
        })
        if entry.late_part_of is not None:
            rendered["late_part_of"] = entry.late_part_of
        if entry.masked:
            rendered["masked"] = entry.masked
        if entry.participant_state is not None:
            rendered["participant_state"] = entry.participant_state
        if entry.not_relayed is not None:
            rendered["not_relayed"] = entry.not_relayed
    else:
        rendered.update({
            "kind": entry.kind,
            "from": _number(entry.sender),
            "to": _number(entry.recipient),
            "status": entry.state,
            "parts": entry.parts,
            "attempts": entry.attempts,
            "created_at": iso_time(entry.created_at),
            "submitted_at": iso_time(entry.submitted_at),
            "error_code": entry.error_code,
            "error_reason": entry.error_reason,
        })
    if with_text and entry.text is not None:
        rendered["text"] = entry.text
    return rendered


def blocked_number_view(entry: BlockedNumber) -> dict[str, Any]:
    return {
        "number": to_e164(entry.msisdn),
        "reason": entry.reason,
        "blocked_at": iso_time(entry.blocked_at),
    }
