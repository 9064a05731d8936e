import json
import time

import pytest

from web.json_body import MAX_DEPTH, JsonBodyError, nesting_depth, parse


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('"[[[["', 0),  # brackets inside a string
        ('["\\"[[[", "\\\\", []]', 2),  # an escaped quote, an escaped backslash, then a list
        ('{"a": "\\\\\\"{"}', 1),
        ("[" * 40 + "]" * 40, 40),
        ('"unterminated [[[', 0),
        ("", 0),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert nesting_depth(text.encode()) == depth


def test_nesting_depth_agrees_with_json_on_valid_documents():
    document = {"a": [{"b": "[{\\\"", "c": [[["]"]]]}], "d": "\\"}
    encoded = json.dumps(document).encode()
    assert nesting_depth(encoded) == 6
    assert parse(encoded) == document


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b'{"a":' * 5000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)],
)
def test_deep_nesting_is_refused_before_parsing(body):
    with pytest.raises(JsonBodyError, match=f"deeper than {MAX_DEPTH} levels"):
        parse(body)


def test_nesting_up_to_the_limit_is_parsed():
    assert parse(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


def test_pathological_strings_take_linear_time():
    started = time.monotonic()
    for body in (b'"' + b'\\"' * 32000, b'"\\' * 32000, b'"' * 64000, b"\\" * 64000):
        with pytest.raises(JsonBodyError):
            parse(body)
    # a quadratic scan of these bodies takes minutes; a linear one milliseconds (a wide bound:
    # this tells the two apart, it does not measure a loaded machine)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"messageId": "a", "messageId": "b"}', "repeats the key 'messageId'"),
        (b'{"m": {"k": 1, "k": 2}}', "repeats the key 'k'"),
        (b'{"text": "caf\xe9"}', "not UTF-8"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"n": ' + b"1" * 5000 + b"}", "number too long"),
    ],
)
def test_bad_bodies_name_the_problem(body, problem):
    with pytest.raises(JsonBodyError, match=problem):
        parse(body)


def test_nul_and_non_ascii_text_parse_as_json_says():
    assert parse('{"text": "a\\u0000b ٣"}'.encode()) == {"text": "a\x00b ٣"}
