"""The webhooks' form reader gives what werkzeug's `request.form` gives, for any body."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from web.form_body import FORM, body, form_fields


def werkzeugs(body: bytes) -> dict[str, str]:
    environ = EnvironBuilder(method="POST", data=body, content_type=FORM).get_environ()
    return dict(Request(environ).form.items())


# the characters that mean something in a form, escapes of UTF-8 and of bytes that are not
_PIECES = st.sampled_from(["&", "=", "+", "%", "%2", "%26", "%3D", "%2B", "%20", "%C3%A9",
                           "%FF", "%C3", "%e2%98%83", "%00", "a", "Z", "é", "\x00", " ", "&&"])
_BODIES = st.one_of(
    st.lists(_PIECES, max_size=30).map(lambda parts: "".join(parts).encode()),
    st.binary(max_size=60),
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()),
)


@settings(max_examples=400, database=None, deadline=None)
@given(_BODIES)
def test_same_fields_as_werkzeug(body):
    assert form_fields(body) == werkzeugs(body)
    assert list(form_fields(body)) == list(werkzeugs(body))  # and in the same order


@pytest.mark.parametrize(("body", "fields"), [
    (b"a=1&b=2", {"a": "1", "b": "2"}),
    (b"a=1&a=2", {"a": "1"}),  # the first value, as MultiDict.items()
    (b"a&=x&&b=", {"a": "", "": "x", "b": ""}),
    (b"t=a+b%2Bc%26d%3De", {"t": "a b+c&d=e"}),
    (b"id=%FF%FE", {"id": "%FF%FE"}),  # escapes of bytes that are not UTF-8 stay written
    (b"t=h\xff", {}),  # a body that is not UTF-8: werkzeug drops the form whole
])
def test_werkzeugs_rules(body, fields):
    assert form_fields(body) == fields == werkzeugs(body)


class _Limited(Request):
    max_content_length = 100


class _Trickle:
    """A WSGI input that gives at most `step` bytes a read, then fails or ends."""

    def __init__(self, data: bytes, step: int, fail: bool = False) -> None:
        self._data, self._step, self._fail = data, step, fail

    def read(self, size: int = -1) -> bytes:
        if not self._data and self._fail:
            raise OSError("connection reset")
        n = self._step if size < 0 else min(size, self._step)
        out, self._data = self._data[:n], self._data[n:]
        return out


def _environ(data: bytes, length: str | None, *, terminated: bool, step: int, fail: bool,
             chunked: bool) -> dict[str, object]:
    environ = EnvironBuilder(method="POST", content_type=FORM).get_environ()
    environ["wsgi.input"] = _Trickle(data, step, fail)
    environ.pop("CONTENT_LENGTH", None)
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    if terminated:
        environ["wsgi.input_terminated"] = True
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    return environ


def _outcome(read: Callable[[Request], bytes], request: Request) -> tuple[str, object]:
    try:
        data = read(request)
    except HTTPException as exc:
        return "error", exc.code
    # and a later reader of the body (werkzeug's own) finds the same bytes
    return "body", (data, request.get_data(cache=False) if read is body else data)


@settings(max_examples=300, database=None, deadline=None)
@given(
    data=st.binary(max_size=130),
    declared=st.one_of(st.none(), st.integers(0, 140).map(str),
                       st.sampled_from(["", "x", "-1", "0012", " 5", "٣"])),
    terminated=st.booleans(), step=st.integers(1, 200), fail=st.booleans(),
    chunked=st.booleans(),
)
def test_body_as_werkzeug_reads_it(data, declared, terminated, step, fail, chunked):
    """Chunked or not, short reads, a stream that ends or fails early, lengths over the limit:
    the same bytes, or the same HTTP error (400 for a client gone, 413 over the limit)."""
    ours = _Limited(_environ(data, declared, terminated=terminated, step=step, fail=fail,
                             chunked=chunked))
    theirs = _Limited(_environ(data, declared, terminated=terminated, step=step, fail=fail,
                               chunked=chunked))
    expected = _outcome(lambda r: r.get_data(), theirs)
    found = _outcome(body, ours)
    if found[0] == "body" and expected[0] == "body":
        data_ours, again = found[1]
        assert data_ours == again == expected[1][0]
    else:
        assert found == expected


@pytest.mark.parametrize(("declared", "terminated", "data", "outcome"), [
    ("7", False, b"a=1&b=2", ("body", b"a=1&b=2")),
    ("9", False, b"a=1&b=2", ("error", 400)),  # the client went away before its body ended
    ("101", True, b"x" * 101, ("error", 413)),
    ("100", True, b"x" * 100, ("body", b"x" * 100)),
])
def test_body_cases(declared, terminated, data, outcome):
    request = _Limited(_environ(data, declared, terminated=terminated, step=3, fail=False,
                                chunked=False))
    found = _outcome(body, request)
    assert (found[0], found[1][0] if found[0] == "body" else found[1]) == outcome
