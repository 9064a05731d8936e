"""A finished intro's record folded into its conversation's own hash (one field per side).

A conversation's two intros are the only sends every conversation has. Once one is finished
(delivered or failed by its receipts: nothing will claim, send or retry it again), its record
(`out:intro-<id>-<side>`, a key of its own) is folded into one field of the conversation's hash,
named by the side ("0", "1"), and the key is deleted: a live conversation then costs two keys
fewer (docs/performance.md, section 4). The receipt script does it, in the same step as the
receipt that finished the send; a later receipt for it unfolds the record first, applies as
before, and folds it again.

The field's value is the record's fields in a fixed order, separated by '|':

    <state><attempts> | created | submitted | vonage-id[:status],... | parts | expected parts
                      | receipt error | from | to

(the empty slots at the end left out). state is `d` (delivered) or `f` (failed); the times are
milliseconds, `created` after the conversation's own `c` (to the millisecond, floored) and
`submitted` after `created`; `parts` is empty when it is the number of Vonage ids; `from` and
`to` are empty when they are the side's proxy and number in the conversation (a proxy that
moves later is written into the field first, see `keep`); each Vonage id carries its receipt's
status as one letter (RECEIPT_CODES), none for `delivered`, and an empty one (`id:`) when no
receipt came for it. When the last receipt came (`receipt_at`), which nothing reads, is not
kept (a later receipt writes it again). Only a record that is exactly this is folded (its
times to the millisecond, no other field, the whole value within a listpack's 64 bytes, the
conversation a hash); any other keeps its key, read as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from shared.domain import ERASED

# The conversation hash's field holding each side's folded intro.
FIELDS = ("0", "1")

# The longest value Redis keeps in a listpack (hash-max-listpack-value): a longer one would turn
# the whole conversation hash into a hash table.
MAX_VALUE_BYTES = 64

STATE_CODES = {"delivered": "d", "failed": "f"}
RECEIPT_CODES = {"delivered": "d", "accepted": "a", "failed": "f", "rejected": "r",
                 "expired": "e", "buffered": "b", "unknown": "u"}
_STATES = {code: name for name, code in STATE_CODES.items()}
_RECEIPTS = {code: name for name, code in RECEIPT_CODES.items()}

# The positions of the value's slots, and how many there are.
_IDS, _PARTS, _EXPECTED, _ERROR, _FROM, _TO = 3, 4, 5, 6, 7, 8
_SLOTS = 9


def _lua_table(codes: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name}='{code}'" for name, code in codes.items()) + "}"


# Lua for the scripts of shared/messages.py that touch an intro's record. KEYS[1] is the record;
# `conv` the conversation's key, `field` the side's field ('0'/'1'). The codec here and in
# Python below must agree: tests/shared/test_folded_intros.py checks one against the other.
#
# LUA_STATE, all the claim, mark_submitted and owe scripts need (they run for every send: kept
# small), is part of LUA, the whole codec (the receipt script).
LUA_STATE = """
local STATES = """ + _lua_table(_STATES) + """
local function is_hash(key) return redis.call('TYPE', key)['ok'] == 'hash' end

-- the folded intro's state, or nil when it is not folded (its record, if any, answers)
local function folded_state(conv, field)
  if redis.call('EXISTS', KEYS[1]) == 1 or not is_hash(conv) then return nil end
  local value = redis.call('HGET', conv, field)
  if not value then return nil end
  return STATES[string.sub(value, 1, 1)] or 'delivered'
end

"""

LUA = LUA_STATE + """
local STATE_CODES = """ + _lua_table(STATE_CODES) + """
local RECEIPT_CODES = """ + _lua_table(RECEIPT_CODES) + """
local RECEIPTS = {}
for name, code in pairs(RECEIPT_CODES) do RECEIPTS[code] = name end
local REQUIRED = {'state', 'from', 'to', 'created_at', 'attempts', 'vonage_ids', 'parts',
                  'submitted_at', 'receipts'}
local KNOWN = {expected_parts = true, receipt_error = true, receipt_at = true}
for _, name in ipairs(REQUIRED) do KNOWN[name] = true end

-- the slots of a value split at `sep`, padded to `n` with ''
local function split(s, sep, n)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then out[#out + 1] = string.sub(s, start); break end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
  while #out < n do out[#out + 1] = '' end
  return out
end

-- a time written to the millisecond (as messages.py writes them), in ms; nil for any other
local function ms(s)
  if not string.match(s, '^%d+%.?%d?%d?%d?$') then return nil end
  return math.floor(tonumber(s) * 1000 + 0.5)
end

local function seconds(m)
  return string.format('%d.%03d', math.floor(m / 1000), m % 1000)
end

-- the conversation's creation (its `c`: milliseconds, or seconds as a float), in ms, floored
local function base_of(c)
  if string.match(c, '^%d+$') then return tonumber(c) end
  return math.floor(tonumber(c) * 1000)
end

local function side_of(field) return field == '0' and 'a' or 'b' end

-- fold the record into the conversation's hash if it is finished and fits; true if it did
local function fold(conv, field)
  if not is_hash(conv) then return false end
  local flat = redis.call('HGETALL', KEYS[1])
  local f = {}
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    if not KNOWN[name] or string.find(value, '|', 1, true) then return false end
    f[name] = value
  end
  for _, name in ipairs(REQUIRED) do if not f[name] then return false end end
  if not STATE_CODES[f.state] or f.from == '' or f.to == ''
      or not string.match(f.attempts, '^%d+$') then return false end
  local c = redis.call('HGET', conv, 'c')
  local created, submitted = ms(f.created_at), ms(f.submitted_at)
  if not c or not tonumber(c) or not created or not submitted then return false end
  local ok_ids, ids = pcall(cjson.decode, f.vonage_ids)
  local ok_receipts, receipts = pcall(cjson.decode, f.receipts)
  if not ok_ids or not ok_receipts or type(ids) ~= 'table' or type(receipts) ~= 'table' then
    return false
  end
  local listed, parts = {}, {}
  for _, id in ipairs(ids) do
    if type(id) ~= 'string' or id == '' or string.find(id, '[|:,]') then return false end
    local status = receipts[id]
    if status == nil then
      parts[#parts + 1] = id .. ':'
    elseif status == 'delivered' then
      parts[#parts + 1] = id
    elseif RECEIPT_CODES[status] then
      parts[#parts + 1] = id .. ':' .. RECEIPT_CODES[status]
    else
      return false
    end
    listed[id] = true
  end
  if #parts == 0 then return false end
  for id, _ in pairs(receipts) do if not listed[id] then return false end end
  local side = side_of(field)
  local from, to = f.from, f.to
  if from == redis.call('HGET', conv, side .. 'p') then from = '' end
  if to == redis.call('HGET', conv, side .. 'n') then to = '' end
  local count = f.parts
  if count == tostring(#ids) then count = '' end
  local value = table.concat({
    STATE_CODES[f.state] .. f.attempts, string.format('%d', created - base_of(c)),
    string.format('%d', submitted - created), table.concat(parts, ','), count,
    f.expected_parts or '', f.receipt_error or '', from, to}, '|')
  value = string.gsub(value, '|*$', '')
  if #value > """ + str(MAX_VALUE_BYTES) + """ then return false end
  redis.call('HSET', conv, field, value)
  redis.call('DEL', KEYS[1])
  return true
end

-- a folded intro back as its record (for a late receipt), with what is left of its retention;
-- false when it is not folded, or aged out (as its record would have)
local function unfold(conv, field, now, retention)
  if not folded_state(conv, field) then return false end
  local s = split(redis.call('HGET', conv, field), '|', """ + str(_SLOTS) + """)
  local side = side_of(field)
  local created = base_of(redis.call('HGET', conv, 'c')) + tonumber(s[2])
  local submitted = created + tonumber(s[3])
  local left = math.floor(created / 1000 + tonumber(retention) - tonumber(now))
  if left <= 0 then return false end
  local ids, receipts = {}, {}
  for _, part in ipairs(split(s[4], ',', 0)) do
    local id, colon, code = string.match(part, '^([^:]*)(:?)(.*)$')
    ids[#ids + 1] = id
    if colon == '' then receipts[id] = 'delivered'
    elseif code ~= '' then receipts[id] = RECEIPTS[code] end
  end
  local fields = {
    'state', STATES[string.sub(s[1], 1, 1)], 'attempts', string.sub(s[1], 2),
    'created_at', seconds(created), 'submitted_at', seconds(submitted),
    'vonage_ids', cjson.encode(ids),
    'receipts', next(receipts) and cjson.encode(receipts) or '{}',
    'parts', s[5] ~= '' and s[5] or tostring(#ids),
    'from', s[8] ~= '' and s[8] or redis.call('HGET', conv, side .. 'p'),
    'to', s[9] ~= '' and s[9] or redis.call('HGET', conv, side .. 'n')}
  if s[6] ~= '' then table.insert(fields, 'expected_parts'); table.insert(fields, s[6]) end
  if s[7] ~= '' then table.insert(fields, 'receipt_error'); table.insert(fields, s[7]) end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('EXPIRE', KEYS[1], left)
  redis.call('HDEL', conv, field)
  return true
end
"""


def field_of(side: int) -> str:
    return FIELDS[side]


def _slots(value: str) -> list[str]:
    slots = value.split("|")
    return slots + [""] * (_SLOTS - len(slots))


def _joined(slots: list[str]) -> str:
    return "|".join(slots).rstrip("|")


def _seconds(millis: int) -> str:
    return f"{millis // 1000}.{millis % 1000:03d}"


def _base(conversation: Mapping[str, Any]) -> int | None:
    """The conversation's creation (`c`: milliseconds, or seconds as a float) in ms, floored."""
    try:
        c = str(conversation["c"])
        return int(c) if c.isdigit() else math.floor(float(c) * 1000)
    except (KeyError, ValueError, TypeError):
        return None


def unfold(value: str, conversation: Mapping[str, Any], side: int) -> dict[str, str] | None:
    """The record a folded value stands for, as its key held it (the Lua `unfold`, in Python);
    None for a value that is not one. `conversation` is the conversation's hash."""
    slots = _slots(value)
    base = _base(conversation)
    if (len(slots) != _SLOTS or base is None or slots[0][:1] not in _STATES
            or not slots[_IDS]):
        return None
    letter = "ab"[side]
    try:
        created = base + int(slots[1])
        submitted = created + int(slots[2])
    except ValueError:
        return None
    ids: list[str] = []
    receipts: dict[str, str] = {}
    for part in slots[_IDS].split(","):
        vonage_id, colon, code = part.partition(":")
        ids.append(vonage_id)
        if not colon:
            receipts[vonage_id] = "delivered"
        elif code:
            receipts[vonage_id] = _RECEIPTS.get(code, code)
    fields = {
        "state": _STATES[slots[0][:1]], "attempts": slots[0][1:],
        "created_at": _seconds(created), "submitted_at": _seconds(submitted),
        "parts": slots[_PARTS] or str(len(ids)),
        "from": slots[_FROM] or str(conversation.get(letter + "p", "")),
        "to": slots[_TO] or str(conversation.get(letter + "n", "")),
        "vonage_ids": json.dumps(ids), "receipts": json.dumps(receipts),
    }
    if slots[_EXPECTED]:
        fields["expected_parts"] = slots[_EXPECTED]
    if slots[_ERROR]:
        fields["receipt_error"] = slots[_ERROR]
    return fields


def created_at(value: str, conversation: Mapping[str, Any]) -> float | None:
    """When the folded intro was owed (its retention runs from then)."""
    base = _base(conversation)
    try:
        return (base + int(value.split("|")[1])) / 1000 if base is not None else None
    except (IndexError, ValueError):
        return None


def erased(value: str, conversation: Mapping[str, Any], side: int, number: str) -> str | None:
    """The value with `number` (as its sender or recipient) replaced by ERASED; None when it
    names neither."""
    slots = _slots(value)
    if len(slots) != _SLOTS:
        return None
    letter = "ab"[side]
    changed = False
    for slot, derived in ((_FROM, letter + "p"), (_TO, letter + "n")):
        if (slots[slot] or conversation.get(derived)) == number:
            slots[slot] = ERASED
            changed = True
    return _joined(slots) if changed else None


def keep(
    value: str, before: Mapping[str, Any], after: Mapping[str, str], side: int
) -> str:
    """The value to keep when the conversation's hash changes from `before` to `after`: a
    proxy it derives from the conversation (its sender) that moves is written into it first.
    A number it derives that changes is erasure (a conversation's people never change
    otherwise): it then derives ERASED, which is what erasure writes into it too."""
    slots = _slots(value)
    proxy = "ab"[side] + "p"
    if len(slots) == _SLOTS and not slots[_FROM] and before.get(proxy) != after.get(proxy):
        slots[_FROM] = str(before.get(proxy, ""))
    return _joined(slots)


def state_of(value: str) -> str:
    """A folded intro's delivery state."""
    return _STATES.get(value[:1], "delivered")
