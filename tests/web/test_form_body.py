"""The webhooks' form reader gives what werkzeug's `request.form` gives, for any body."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from web.form_body import FORM, form_fields


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
