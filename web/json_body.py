"""JSON request bodies parsed within limits: UTF-8, nesting depth, unique keys.

Python's json module recurses once per level of nesting: a body of a few thousand `[` raises
RecursionError, a 500, before any field (or a webhook's signature) is judged. The depth is
therefore counted before parsing, in one linear pass. A key given twice is refused rather than
resolved (json keeps the last, another parser the first): what was signed or meant is ambiguous.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

MAX_DEPTH = 32  # the deepest body we take: a create's metadata is at most a few levels

_OPENING = frozenset(b"[{")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonBodyError(ValueError):
    """A body that is not acceptable JSON; the message names the problem."""


def nesting_depth(data: bytes, stop_above: int | None = None) -> int:
    """How deeply arrays and objects nest in a JSON text, brackets inside strings not counted.

    Linear in the length (a regular expression for strings backtracks quadratically on an
    unterminated one). Counting stops early once the depth exceeds `stop_above`.
    """
    depth = deepest = 0
    position = 0
    while True:
        quote = data.find(b'"', position)
        for byte in data[position:quote if quote >= 0 else len(data)].translate(
            None, _NOT_BRACKETS
        ):
            if byte in _OPENING:
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if stop_above is not None and deepest > stop_above:
                        return deepest
            else:
                depth -= 1
        if quote < 0:
            return deepest
        end = _string_end(data, quote)
        if end < 0:  # unterminated: the parser refuses it there, no deeper than counted
            return deepest
        position = end + 1


def _string_end(data: bytes, opening: int) -> int:
    """The index of the quote closing the string opened at `opening`, or -1."""
    end = opening
    while True:
        end = data.find(b'"', end + 1)
        if end < 0:
            return -1
        backslashes = 0
        while data[end - 1 - backslashes] == 0x5C:  # stops at the opening quote at the latest
            backslashes += 1
        if backslashes % 2 == 0:
            return end


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonBodyError(f"body repeats the key {key[:40]!r}")
        result[key] = value
    return result


def parse(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a request body; raises JsonBodyError naming what is wrong with it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not UTF-8 (byte {exc.start})") from None
    if nesting_depth(data, stop_above=max_depth) > max_depth:
        raise JsonBodyError(f"body nests arrays and objects deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except JsonBodyError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonBodyError(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # an integer of more than 4,300 digits (int_max_str_digits)
        raise JsonBodyError("body holds a number too long to read") from None


def request_json() -> Any:
    """The current request's JSON body, parsed by `parse`."""
    return parse(request.get_data(cache=True))


def object_body(*, optional: bool = False) -> Any:
    """The current request's body, a JSON object's value (or None when `optional` and there is
    no body at all); raises JsonBodyError, which web/errors.py answers with 400 invalid_json.

    A body of `null` is not the absence of one, and a JSON body needs its content type.
    """
    if optional and not request.content_length and not request.get_data(cache=True):
        return None
    if not request.is_json:
        raise JsonBodyError("body must be a JSON object")
    body = request_json()
    if body is None:
        raise JsonBodyError("body must be a JSON object")
    return body
