"""Message bookkeeping in Redis: webhook dedupe, outbound sends owed, claims, receipts, audit."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

import redis

from shared import folded_intros
from shared.domain import ERASED, DeliveryState, MessageKind, OutboundSms
from shared.keys import DEFAULT_RETENTION_SECONDS, Keys
from shared.scripts import queue_script
from shared.vonage_gateway import sms_parts

# A webhook's dedupe marker while its job is being queued (two steps: claim, then queued).
CLAIM_MARKER = "claimed"
_QUEUED = "queued"


class WebhookClaim(StrEnum):
    CLAIMED = "claimed"  # ours to enqueue
    IN_PROGRESS = "in_progress"  # another attempt is under way (or died): not a duplicate yet
    DUPLICATE = "duplicate"  # queued before


# A claim given back because no replica confirmed it in time (a failover would drop it).
UNREPLICATED = "unreplicated"


@dataclass(frozen=True, slots=True)
class SendClaim:
    """The outcome of trying to claim a send: whether to go ahead, and if not, why."""

    acquired: bool
    state: str
    attempts: int = 0


# Both scripts below record that Vonage took a send the same way: its ids and part count, the
# claim and (unless bodies are retained) the body gone, no longer an open send.
# KEYS: record, claim, text, open sends; ARGV[1]: the send's id.
_SUBMIT = """
local function submit(ids, parts, at, retain)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'submitted', 'vonage_ids', ids, 'parts', parts,
             'submitted_at', at, 'receipts', '{}')
  if retain ~= '1' then redis.call('DEL', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[1])
end
"""

# One part's receipt, and the message's state from all its parts' receipts so far, in one step:
# receipts for the parts of one message are handled concurrently (a read-modify-write would lose
# one), and race the send's own record of Vonage's answer. A receipt for a send still `sending`
# proves Vonage took it: it completes the record first, with as many parts as the text splits
# into (the answer was never seen). Delivered once every part is; failed once any part failed.
# An intro's record (KEYS[5], its conversation; ARGV[7], its side's field) is folded into its
# conversation's hash once finished, and unfolded first for a receipt that comes later
# (shared/folded_intros.py): a late receipt applies as it would have to the record.
# KEYS: record, claim, text, open sends, [conversation]. ARGV: id, vonage id, status, err-code,
# now, retain body, [field, retention seconds].
_RECORD_RECEIPT = _SUBMIT + folded_intros.LUA + """
if KEYS[5] then unfold(KEYS[5], ARGV[7], ARGV[5], ARGV[8]) end
if redis.call('HEXISTS', KEYS[1], 'vonage_ids') == 0 then
  -- not ours, never sent, or aged out: no half a record is made
  if redis.call('HGET', KEYS[1], 'state') ~= 'sending' then return 0 end
  submit(cjson.encode({ARGV[2]}), redis.call('HGET', KEYS[1], 'expected_parts') or '1',
         ARGV[5], ARGV[6])
end
local receipts = cjson.decode(redis.call('HGET', KEYS[1], 'receipts') or '{}')
receipts[ARGV[2]] = ARGV[3]
local parts = tonumber(redis.call('HGET', KEYS[1], 'parts') or '1')
local seen, failed, delivered = 0, false, true
for _, status in pairs(receipts) do
  seen = seen + 1
  if status == 'failed' or status == 'rejected' or status == 'expired' then failed = true end
  if status ~= 'delivered' then delivered = false end
end
redis.call('HSET', KEYS[1], 'receipts', cjson.encode(receipts), 'receipt_at', ARGV[5])
if failed then
  redis.call('HSET', KEYS[1], 'state', 'failed')
elseif delivered and seen >= parts then
  redis.call('HSET', KEYS[1], 'state', 'delivered')
end
if ARGV[4] ~= '' and ARGV[4] ~= '0' then redis.call('HSET', KEYS[1], 'receipt_error', ARGV[4]) end
if KEYS[5] then fold(KEYS[5], ARGV[7]) end
return 1
"""

# Vonage took a send: its ids and part count, once. One step, because the send's own worker and
# a delivery receipt that arrived first (which completes an in-doubt record) race to do it, and
# the later one must neither reset the receipts already counted nor the state they gave.
# A folded intro was finished by its receipts: nothing to record (no half record is made).
# Either way the send is no longer in doubt (the in-doubt set: its own round trip before).
# KEYS: record, claim, text, open sends, in-doubt sends, [conversation]. ARGV: id, vonage ids,
# parts, now, retain body (1/0), [an intro's field].
_MARK_SUBMITTED = _SUBMIT + folded_intros.LUA_STATE + """
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[5], ARGV[1])
if KEYS[6] and folded_state(KEYS[6], ARGV[6]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'vonage_ids') == 1 then return 0 end
submit(ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""


def _now() -> float:
    """Unix time to the millisecond: what a record's times need, in 4 fewer bytes each."""
    return round(time.time(), 3)


_INTRO_PREFIX = "intro-"


def _derived(outbound_id: str) -> tuple[str | None, MessageKind | None]:
    """(conversation id, kind) an outbound id names by itself: an intro's, intro-<id>-<side>
    (shared/outbound.intro_id); (None, None) for any other."""
    if not outbound_id.startswith(_INTRO_PREFIX):
        return None, None
    conversation_id, dash, side = outbound_id.removeprefix(_INTRO_PREFIX).rpartition("-")
    if not dash or side not in {"0", "1"} or not conversation_id:
        return None, None
    return conversation_id, MessageKind.INTRO


def _origin(outbound_id: str, data: dict[str, Any]) -> tuple[str | None, MessageKind | None]:
    """An outbound record's conversation and kind: stored, or (an intro's) named by its id."""
    if "kind" not in data:
        # an intro written without them; a record lacking them otherwise is only half one
        return _derived(outbound_id) if "from" in data else (None, None)
    return str(data.get("conversation_id") or "") or None, MessageKind(str(data["kind"]))


# A send's claim in one round trip (it was three: the state, the lease, the attempt): a
# finished send is never claimed; an unfinished one is taken for a lease, marked sending and
# its attempt counted; a folded intro is finished. KEYS: record, claim, [conversation]. ARGV:
# lease seconds, [an intro's field]. Returns {taken, state, attempts}.
_CLAIM_SEND = folded_intros.LUA_STATE + """
if KEYS[3] then
  local folded = folded_state(KEYS[3], ARGV[2])
  if folded then return {0, folded, 0} end
end
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'queued' and state ~= 'sending' then return {0, state, 0} end
state = state or 'queued'
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return {0, state, 0} end
redis.call('HSET', KEYS[1], 'state', 'sending')
return {1, state, redis.call('HINCRBY', KEYS[1], 'attempts', 1)}
"""

# A record written once per id, whole, in one round trip (it was two: the marker, then the
# rest): the first field given is the once-only marker, and a record already there is left as
# it is, with nothing else written. An owed send's body and its place among the open sends go
# with it. An intro folded into its conversation (KEYS[5]) is there already. KEYS: record, the
# trail's list, the body, the open sends, [conversation]. ARGV: retention seconds, the trail
# entry ('' for none), the owed send's id ('' for none: no body, not open), its body, now, an
# intro's field ('' for none), then field, value pairs. Returns 1 when this call wrote it.
_RECORD_ONCE = folded_intros.LUA_STATE + """
if KEYS[5] and folded_state(KEYS[5], ARGV[6]) then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[7], ARGV[8]) == 0 then return 0 end
if #ARGV > 8 then redis.call('HSET', KEYS[1], unpack(ARGV, 9)) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
end
if ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return 1
"""


# A send recorded failed only while it is still owed (queued or sending): a receipt that came
# meanwhile (an in-doubt earlier attempt, or one racing an expiry) finished it, and a folded
# intro's record key is gone, where an HSET would make half a record beside its folded field.
# KEYS: record, claim, text, open sends. ARGV: id, code, reason, now, retain body (1/0).
_MARK_FAILED = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'sending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error_code', ARGV[2], 'error_reason', ARGV[3],
           'failed_at', ARGV[4])
if ARGV[5] ~= '1' then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""


# A folded intro's value replaced only if it is still the one read (a late receipt may have
# unfolded it meanwhile). KEYS: conversation. ARGV: field, old value, new value.
_REPLACE_FOLDED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def _side(outbound_id: str) -> int | None:
    """An intro's side (0, 1), None for any other send."""
    if _derived(outbound_id)[0] is None:
        return None
    return int(outbound_id.rpartition("-")[2])


class MessageLog:
    """Dedupe markers, outbound records and the per-conversation audit trail."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None,
        *, retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self._redis = client
        self._keys = keys or Keys()
        # Records outlive the conversation so that the audit trail can be read afterwards,
        # but not forever.
        self._retention = retention_seconds
        self._record_receipt = client.register_script(_RECORD_RECEIPT)
        self._mark_submitted = client.register_script(_MARK_SUBMITTED)
        self._mark_failed = client.register_script(_MARK_FAILED)
        self._claim_send = client.register_script(_CLAIM_SEND)
        self._record_once = client.register_script(_RECORD_ONCE)
        self._replace_folded = client.register_script(_REPLACE_FOLDED)

    def _folded_at(self, outbound_id: str) -> tuple[list[str], list[str]]:
        """For an intro: ([its conversation's key], [its field]) that the scripts take, where
        its record is folded once finished; ([], []) for any other send."""
        conversation_id, _ = _derived(outbound_id)
        side = _side(outbound_id)
        if conversation_id is None or side is None:
            return [], []
        return [self._keys.conversation(conversation_id)], [folded_intros.field_of(side)]

    # -- webhook dedupe --------------------------------------------------------------------
    #
    # Two steps. A short-lived claim comes first: if Redis hangs with the SET on the wire, the
    # webhook answers 503 but the SET may still run when Redis resumes, and a permanent marker
    # would then turn Vonage's retry into a "duplicate" of a job never queued: a lost message.
    # A claim that outlives its attempt only delays the retry until it expires. Once the broker
    # has the job, the claim becomes the long-lived marker.

    def claim_webhook(self, kind: str, message_id: str, claim_ms: int) -> WebhookClaim:
        key = self._keys.dedupe(kind, message_id)
        if self._redis.set(key, CLAIM_MARKER, nx=True, px=claim_ms):
            return WebhookClaim.CLAIMED
        if self._redis.get(key) == CLAIM_MARKER:
            return WebhookClaim.IN_PROGRESS
        return WebhookClaim.DUPLICATE

    def confirm_webhook(self, kind: str, message_id: str, ttl_seconds: int) -> None:
        """The job is in the broker: remember the messageId for as long as Vonage may retry."""
        self._redis.set(self._keys.dedupe(kind, message_id), _QUEUED, ex=ttl_seconds)

    def drop_webhook_claim(self, kind: str, message_id: str) -> None:
        """Nothing reached the broker: let Vonage's retry of this webhook be taken at once."""
        self._redis.delete(self._keys.dedupe(kind, message_id))

    # -- inbound records -------------------------------------------------------------------

    def record_inbound(
        self, conversation_id: str, message_id: str, sender: str, parts: int, text: str | None,
        *, late_part_of: str | None = None, masked: int = 0,
        participant_state: str | None = None, not_relayed: str | None = None,
    ) -> bool:
        """Add an inbound message to its conversation's trail once; False if already there.

        `late_part_of` marks a part that came after its message (that id) was relayed;
        `masked` is how many contact details its relayed text had replaced;
        `participant_state` the sender's opt-out state it set (STOP, START);
        `not_relayed` why it was not relayed (a keyword, a cap, a block...).
        """
        key = self._keys.inbound(message_id)
        fields: dict[Any, Any] = {
            "conversation_id": conversation_id,
            "direction": "inbound",
            "from": sender,
            "parts": parts,
            "received_at": _now(),
        }
        if text is not None:
            fields["text"] = text
        if late_part_of is not None:
            fields["late_part_of"] = late_part_of
        if masked:
            fields["masked"] = masked
        if participant_state is not None:
            fields["participant_state"] = participant_state
        if not_relayed is not None:
            fields["not_relayed"] = not_relayed
        return self._write_once(key, fields, self._keys.conversation_log(conversation_id),
                                f"in:{message_id}")


    def _write_once(
        self, key: str, fields: dict[str, Any], log: str | None = None, entry: str = "",
        owed: OutboundSms | None = None,
    ) -> bool:
        """Write a record whole, once per key (its first field is the marker), appending
        `entry` to the list `log`, and for an `owed` send its body and open entry too; False
        when the record was already there (then nothing is written)."""
        pairs = [str(v) for kv in fields.items() for v in kv]
        conversation, field = self._folded_at(owed.id) if owed else ([], [])
        keys = [key, log or key,
                self._keys.outbound_text(owed.id) if owed else key,
                self._keys.outbound_open() if owed else key, *conversation]
        args: list[str | int | float] = [
            self._retention, entry if log else "", owed.id if owed else "",
            owed.text if owed else "", time.time(), *(field or [""]), *pairs]
        return bool(self._record_once(keys=keys, args=args))

    # -- outbound records ------------------------------------------------------------------

    def owe(self, message: OutboundSms, *, in_trail: bool = True) -> OutboundSms | None:
        """Record a send we owe, once per id: the send as recorded (what `outbound` would
        read back now), or None when it was already recorded (then nothing is written).

        `in_trail=False` leaves it out of the conversation's log list, for sends whose ids the
        trail derives from the conversation (the intros), to save the list entry.
        """
        created_at = _now()
        fields: dict[str, Any] = {
            "state": DeliveryState.QUEUED.value,  # first: the once-only marker
            "from": message.sender,
            "to": message.recipient,
            "created_at": created_at,
            "attempts": 0,
        }
        # An intro's id names its conversation and kind (intro-<conversation>-<side>): stored
        # once per live conversation and side, they would be bytes for nothing.
        if _derived(message.id) != (message.conversation_id, message.kind):
            fields.update(conversation_id=message.conversation_id or "", kind=message.kind.value)
        # what Vonage will split it into: a receipt that settles an in-doubt send (no answer
        # was seen) then still waits for every part's receipt (one when absent)
        parts = sms_parts(message.text)
        if parts != 1:
            fields["expected_parts"] = parts
        if message.origin_at:
            fields["origin_at"] = message.origin_at
        log = (self._keys.conversation_log(message.conversation_id)
               if message.conversation_id and in_trail else None)
        if not self._write_once(self._keys.outbound(message.id), fields, log,
                                f"out:{message.id}", owed=message):
            return None
        return replace(message, created_at=created_at)

    def outbound(self, outbound_id: str) -> OutboundSms | None:
        """A send still owed; None once it is finished (its body is gone) or if unknown."""
        pipe = self._redis.pipeline()
        pipe.hgetall(self._keys.outbound(outbound_id))
        pipe.get(self._keys.outbound_text(outbound_id))
        data, text = pipe.execute()
        conversation_id, kind = _origin(outbound_id, data or {})
        if not data or text is None or kind is None:
            return None
        if data.get("state") not in {DeliveryState.QUEUED.value, DeliveryState.SENDING.value}:
            return None
        return OutboundSms(
            id=outbound_id,
            conversation_id=conversation_id,
            kind=kind,
            sender=str(data["from"]),
            recipient=str(data["to"]),
            text=str(text),
            created_at=float(data.get("created_at") or 0.0),
            origin_at=float(data["origin_at"]) if data.get("origin_at") else None,
        )

    def outbound_state(self, outbound_id: str) -> str | None:
        """A send's delivery state; a folded intro's from its conversation's hash."""
        conversation, field = self._folded_at(outbound_id)
        if not conversation:
            state = self._redis.hget(self._keys.outbound(outbound_id), "state")
            return str(state) if state is not None else None
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._keys.outbound(outbound_id), "state")
        pipe.hget(conversation[0], field[0])
        state, folded = pipe.execute(raise_on_error=False)
        if isinstance(state, str):
            return state
        if isinstance(folded, str):  # (a conversation in the JSON layout answers an error)
            return folded_intros.state_of(folded)
        return None

    def claim_send(
        self, outbound_id: str, lease_seconds: int, *, replicas: int = 0, wait_ms: int = 0
    ) -> SendClaim:
        """Take the right to call Vonage for one outbound message.

        With `replicas`, the claim counts only once that many replicas hold it (WAIT, at most
        `wait_ms`); otherwise it is given back and the state is UNREPLICATED.

        A finished send (submitted, delivered or failed) is never claimed again. An unfinished
        one is claimed for a lease: if the worker dies mid-call the lease runs out and the
        redelivered task may try again; that gap is the only window for a duplicate.
        """
        if replicas == 0:
            conversation, field = self._folded_at(outbound_id)
            taken, held, attempts = self._claim_send(
                keys=[self._keys.outbound(outbound_id), self._keys.send_claim(outbound_id),
                      *conversation],
                args=[lease_seconds, *field],
            )
            return SendClaim(acquired=bool(taken), state=str(held), attempts=int(attempts))
        state = self.outbound_state(outbound_id)
        if state not in {None, DeliveryState.QUEUED.value, DeliveryState.SENDING.value}:
            return SendClaim(acquired=False, state=str(state))
        # WAIT counts replicas holding this connection's writes: it follows the claim on one
        # connection (a pipeline). A claim only the master holds would vanish in a failover,
        # and the promoted replica's redelivered task would send again.
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.send_claim(outbound_id), "1", nx=True, ex=lease_seconds)
        pipe.execute_command("WAIT", replicas, max(1, wait_ms))  # type: ignore[no-untyped-call]
        taken, acked = pipe.execute()
        acquired = bool(taken)
        if acquired and int(acked) < replicas:
            self._redis.delete(self._keys.send_claim(outbound_id))
            return SendClaim(acquired=False, state=UNREPLICATED)
        attempts = 0
        if acquired:
            key = self._keys.outbound(outbound_id)
            pipe = self._redis.pipeline()
            pipe.hset(key, "state", DeliveryState.SENDING.value)
            pipe.hincrby(key, "attempts", 1)
            attempts = int(pipe.execute()[1])
        return SendClaim(
            acquired=acquired, state=str(state or DeliveryState.QUEUED.value), attempts=attempts
        )

    def claim_remaining(self, outbound_id: str) -> float:
        """Seconds until another attempt may claim this send (0 when nobody holds it)."""
        return max(0.0, int(self._redis.pttl(self._keys.send_claim(outbound_id))) / 1000)

    def release_claim(self, outbound_id: str) -> None:
        """Give a claim back after a send Vonage surely did not accept (so a retry may send)."""
        self._redis.delete(self._keys.send_claim(outbound_id))

    def mark_submitted(
        self, outbound_id: str, vonage_ids: list[str], *, retain_body: bool,
        parts: int | None = None,
    ) -> None:
        """Vonage accepted the send: remember its message ids to match delivery receipts.

        `parts` defaults to one per id Vonage answered with. Once only: a record already
        completed (by a receipt that came first) is left alone. Either way the send leaves the
        in-doubt set.
        """
        conversation, field = self._folded_at(outbound_id)
        self._mark_submitted(
            keys=[self._keys.outbound(outbound_id), self._keys.send_claim(outbound_id),
                  self._keys.outbound_text(outbound_id), self._keys.outbound_open(),
                  self._keys.outbound_in_doubt(), *conversation],
            args=[outbound_id, json.dumps(vonage_ids),
                  parts if parts is not None else len(vonage_ids), _now(),
                  "1" if retain_body else "0", *field],
        )

    def mark_failed(
        self, outbound_id: str, code: str, reason: str, *, retain_body: bool
    ) -> bool:
        """A permanent failure (or retries used up): recorded with Vonage's code and reason.

        Only a send still owed is marked; False when a receipt had finished it already
        (delivered, failed or folded), which is left as it is.
        """
        return bool(self._mark_failed(
            keys=[self._keys.outbound(outbound_id), self._keys.send_claim(outbound_id),
                  self._keys.outbound_text(outbound_id), self._keys.outbound_open()],
            args=[outbound_id, code, reason, _now(), "1" if retain_body else "0"],
        ))

    # -- delivery receipts -----------------------------------------------------------------

    def apply_receipt(
        self,
        outbound_id: str | None,
        vonage_id: str,
        status: str,
        err_code: str,
        *,
        retain_body: bool = False,
    ) -> str | None:
        """Record one part's receipt; returns the outbound id it belongs to, if known.

        The receipt names its send by `client-ref`, which every send carries (its record's id),
        so no key per Vonage message id is kept. A receipt for a send still `sending` proves
        Vonage took it (its worker died, or Redis failed, before recording that): it completes
        the record, so the in-doubt send is never made again.
        """
        if not outbound_id:
            return None
        conversation, field = self._folded_at(outbound_id)
        matched = self._record_receipt(
            keys=[self._keys.outbound(outbound_id), self._keys.send_claim(outbound_id),
                  self._keys.outbound_text(outbound_id), self._keys.outbound_open(),
                  *conversation],
            args=[outbound_id, vonage_id, status, err_code, _now(),
                  "1" if retain_body else "0", *field,
                  *([self._retention] if field else [])],
        )
        return outbound_id if matched else None

    # -- erasure ---------------------------------------------------------------------------

    def redact(self, conversation_id: str, number: str, first: Sequence[str] = ()) -> int:
        """Take a person's number, and every body, out of a conversation's message records
        (in a conversation of two, each body was written by them or sent to them); returns how
        many records changed (0 when run again).

        A send still owed is given up (failed, `erased`) and loses its body, so that it is
        never made: `outbound` answers None for it.
        """
        refs = self._refs(conversation_id, first)
        pipe = self._redis.pipeline()
        for kind, ident in refs:
            pipe.hmget(self._record_key(kind, ident), "from", "to", "state", "text")
            if kind == "out":
                pipe.exists(self._keys.outbound_text(ident))
        folds = self._folds(pipe, conversation_id, refs)
        found = iter(folds.fill(pipe.execute(raise_on_error=False)))
        changed = 0
        owed = {DeliveryState.QUEUED.value, DeliveryState.SENDING.value}
        replaced: list[tuple[str, str, str]] = []
        for kind, ident in refs:
            sender, recipient, state, inline_text = next(found)
            has_text = inline_text is not None or (kind == "out" and bool(next(found)))
            key = self._record_key(kind, ident)
            if sender is None and recipient is None and state is None and ident in folds.live:
                # a folded intro (finished: never owed): its sender or recipient erased there
                field, value = folds.live[ident]
                erased = folded_intros.erased(value, folds.conversation, folds.side[ident],
                                              number)
                if erased is None and not has_text:
                    continue
                if erased is not None:
                    replaced.append((field, value, erased))
                pipe.delete(self._keys.outbound_text(ident))
                changed += 1
                continue
            fields: dict[Any, Any] = {
                name: ERASED for name, value in (("from", sender), ("to", recipient))
                if value == number
            }
            if kind == "out" and state in owed:
                fields.update(state=DeliveryState.FAILED.value, error_code=ERASED,
                              error_reason="a participant's data was erased")
                pipe.zrem(self._keys.outbound_open(), ident)
            if not fields and not has_text:
                continue
            if fields:
                pipe.hset(key, mapping=fields)
            pipe.hdel(key, "text")
            if kind == "out":
                pipe.delete(self._keys.outbound_text(ident))
            changed += 1
        for field, value, erased in replaced:
            queue_script(pipe, self._replace_folded, [self._keys.conversation(conversation_id)],
                         [field, value, erased])
        results = pipe.execute()
        if replaced and not all(results[len(results) - len(replaced):]):
            # a late receipt unfolded an intro meanwhile: its record is erased as any other
            # (counted once, above)
            self.redact(conversation_id, number, first)
        return changed

    def _folds(
        self, pipe: Any, conversation_id: str, refs: Sequence[tuple[str, str]]
    ) -> _Folds:
        """Queue reading the conversation's hash last when `refs` hold its intros; the
        pipeline's results then go through the returned _Folds' `fill`."""
        sides = {ident: side for kind, ident in refs if kind == "out"
                 for side in [_side(ident)]
                 if side is not None and _derived(ident)[0] == conversation_id}
        if sides:
            pipe.hgetall(self._keys.conversation(conversation_id))
        return _Folds(sides, self._retention)

    def _record_key(self, kind: str, ident: str) -> str:
        return self._keys.inbound(ident) if kind == "in" else self._keys.outbound(ident)

    def _refs(self, conversation_id: str, first: Sequence[str]) -> list[tuple[str, str]]:
        """(kind, id) of every record in a conversation's trail, oldest first."""
        entries = [f"out:{i}" for i in first]
        entries += [str(e) for e in
                    self._redis.lrange(self._keys.conversation_log(conversation_id), 0, -1)]
        return [(kind, ident) for kind, _, ident in (e.partition(":") for e in entries)]

    # -- audit trail -----------------------------------------------------------------------

    def trail(
        self, conversation_id: str, first: Sequence[str] = (), *, with_text: bool = False
    ) -> list[TrailEntry]:
        """Every message of a conversation, oldest first.

        `first` are outbound ids kept out of the log list (the intros); `with_text` adds the
        bodies that were retained.
        """
        refs = self._refs(conversation_id, first)
        pipe = self._redis.pipeline()
        for kind, ident in refs:
            pipe.hgetall(self._record_key(kind, ident))
        folds = self._folds(pipe, conversation_id, refs)
        records = folds.fill(pipe.execute(raise_on_error=False))
        texts: dict[str, str | None] = {}
        if with_text:
            outbound_ids = [ident for kind, ident in refs if kind == "out"]
            for ident in outbound_ids:
                pipe.get(self._keys.outbound_text(ident))
            texts = dict(zip(outbound_ids, pipe.execute(), strict=True))
        out: list[TrailEntry] = []
        for (kind, ident), data in zip(refs, records, strict=True):
            if kind == "out" and not (data and _OUTBOUND_FIELDS <= data.keys()):
                data = folds.record(ident) or data  # an intro folded into its conversation
            # a record that aged out (or was only half re-created by a late receipt) is skipped
            if kind == "in" and data and _INBOUND_FIELDS <= data.keys():
                out.append(InboundRecord.from_fields(ident, data))
            elif kind == "out" and data and _OUTBOUND_FIELDS <= data.keys():
                out.append(OutboundRecord.from_fields(ident, data, texts.get(ident)))
        return out


class _Folds:
    """A conversation's folded intros, as one read of its hash found them (none when the
    hash was not read, or the record is a JSON string)."""

    def __init__(self, side: dict[str, int], retention: int) -> None:
        self.side = side
        self._retention = retention
        self.conversation: dict[str, str] = {}
        self.live: dict[str, tuple[str, str]] = {}

    def fill(self, results: list[Any]) -> list[Any]:
        """Take the conversation's hash off the end of a pipeline's results (when it was
        read); the rest of them."""
        if not self.side:
            return results
        found = results.pop()
        self.conversation = found if isinstance(found, dict) else {}
        now = time.time()
        for ident, side in self.side.items():
            value = self.conversation.get(folded_intros.field_of(side))
            owed_at = folded_intros.created_at(value, self.conversation) if value else None
            # aged out as its record would have (its retention runs from when it was owed)
            if value and owed_at is not None and owed_at + self._retention > now:
                self.live[ident] = (folded_intros.field_of(side), value)
        return results

    def record(self, ident: str) -> dict[str, str] | None:
        """The record a folded intro stands for (None when it is not folded)."""
        if ident not in self.live:
            return None
        return folded_intros.unfold(self.live[ident][1], self.conversation, self.side[ident])

@dataclass(frozen=True, slots=True)
class InboundRecord:
    """An inbound message in a conversation's audit trail."""

    id: str
    sender: str
    parts: int
    received_at: float
    text: str | None = None
    late_part_of: str | None = None  # a part that came after this message was relayed
    masked: int = 0  # contact details replaced in its relayed text
    participant_state: str | None = None  # the sender's opt-out state this message set
    not_relayed: str | None = None  # why it was not relayed
    record: Literal["in"] = "in"

    @classmethod
    def from_fields(cls, ident: str, data: dict[str, Any]) -> InboundRecord:
        return cls(
            id=ident,
            sender=str(data["from"]),
            parts=int(data.get("parts", 1)),
            received_at=float(data["received_at"]),
            text=data.get("text"),
            late_part_of=data.get("late_part_of"),
            masked=int(data.get("masked", 0)),
            participant_state=data.get("participant_state"),
            not_relayed=data.get("not_relayed"),
        )


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """A send in a conversation's audit trail, with its delivery state."""

    id: str
    kind: str | None
    sender: str
    recipient: str
    state: str | None
    parts: int
    attempts: int
    created_at: float
    submitted_at: float | None = None
    error_code: str | None = None
    error_reason: str | None = None
    text: str | None = None
    # Each part's delivery receipt status, in the order Vonage numbered the parts; None for a
    # part whose receipt has not come (yet).
    part_receipts: tuple[str | None, ...] = ()
    record: Literal["out"] = "out"

    @classmethod
    def from_fields(cls, ident: str, data: dict[str, Any], text: str | None) -> OutboundRecord:
        kind = _origin(ident, data)[1]
        return cls(
            id=ident,
            kind=kind.value if kind is not None else None,
            sender=str(data["from"]),
            recipient=str(data["to"]),
            state=data.get("state"),
            parts=int(data.get("parts", 0)),
            attempts=int(data.get("attempts", 0)),
            created_at=float(data["created_at"]),
            submitted_at=float(data["submitted_at"]) if "submitted_at" in data else None,
            error_code=data.get("error_code"),
            error_reason=data.get("error_reason"),
            text=text,
            part_receipts=_part_receipts(data),
        )


def _part_receipts(data: dict[str, Any]) -> tuple[str | None, ...]:
    """Per part, its receipt's status: Vonage's ids say the parts, the receipts map says each."""
    try:
        ids = [str(i) for i in json.loads(data.get("vonage_ids") or "[]")]
        receipts = {str(k): str(v) for k, v in json.loads(data.get("receipts") or "{}").items()}
    except (ValueError, AttributeError, TypeError):
        return ()
    # a receipt for an id the record never heard of (an in-doubt send completed by it) counts too
    ids += sorted(set(receipts) - set(ids))
    return tuple(receipts.get(i) for i in ids)


TrailEntry = InboundRecord | OutboundRecord


_INBOUND_FIELDS = frozenset({"from", "received_at"})
_OUTBOUND_FIELDS = frozenset({"from", "to", "created_at"})
