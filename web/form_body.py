"""A urlencoded form body as werkzeug reads one, without werkzeug's form machinery.

Vonage posts most webhooks as `application/x-www-form-urlencoded`. `request.form` gets there
through werkzeug's form parser (content type options, a stream wrapper, a MultiDict and
`urllib.parse.parse_qsl`), a share of each webhook's CPU (docs/performance.md, benchmark 1).
`form_fields` gives what `dict(request.form.items())` gives, by the same rules (werkzeug 3):

* the body must be UTF-8, else werkzeug drops the form whole (its parser is silent): no fields;
* `&` separates pairs, empty pairs are skipped, a pair without `=` is a name with an empty
  value, the first `=` splits name from value;
* `+` is a space, then percent escapes are decoded as UTF-8, and escapes of bytes that are not
  UTF-8 stay as they were written (werkzeug's `werkzeug.url_quote` error handler);
* a name given twice keeps its first value (MultiDict's `items()`).

The body itself comes from `body(request)`: what `request.get_data()` gives, under the app's
MAX_CONTENT_LENGTH (413 beyond), read without werkzeug's stream wrapper when its length is
known. tests/web/test_form_body.py compares both with werkzeug's, on arbitrary bodies and
streams.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING
from urllib.parse import unquote

# werkzeug registers its codec error handler "werkzeug.url_quote" on import; this module uses
# it by name, so it imports werkzeug's module rather than relying on another import's order.
import werkzeug.urls  # noqa: F401
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

FORM = "application/x-www-form-urlencoded"
_ERRORS = "werkzeug.url_quote"
_CHUNK = 64 * 1024  # what werkzeug's LimitedStream.readall asks for at a time


def body(request: Request) -> bytes:
    """`request.get_data()`, for a request whose body nothing has read yet.

    werkzeug's path (the `stream` property, `get_input_stream`, a `LimitedStream` and its
    `readall`) was ~7 % of a webhook's CPU (docs/performance.md, benchmark 1). With a plain
    Content-Length within the limit this reads `wsgi.input` itself (`read`); anything else
    (chunked or no length, a length over the limit: werkzeug's 413, no limit) goes through
    `get_data` itself.
    """
    environ = request.environ
    limit = request.max_content_length
    length = declared_length(environ, limit)
    if length is None or limit is None:
        return request.get_data()
    return read(environ, length, limit)


def declared_length(environ: WSGIEnvironment, limit: int | None) -> int | None:
    """The body's Content-Length if `read` may read it: a plain number within `limit`, and no
    Transfer-Encoding; None when the body is werkzeug's to read."""
    declared = environ.get("CONTENT_LENGTH")
    if (limit is None or not declared or not declared.isdigit() or not declared.isascii()
            or "HTTP_TRANSFER_ENCODING" in environ):
        return None
    length = int(declared)
    return length if length <= limit else None


def read(environ: WSGIEnvironment, length: int, limit: int) -> bytes:
    """The body of `length` bytes (`declared_length`), read from `wsgi.input` by werkzeug's
    rules, and put back.

    A server that terminates the stream itself (`wsgi.input_terminated`, as gunicorn does) is
    read until it ends, at most `limit`; otherwise exactly `length` bytes, and a stream that
    ends or fails sooner is a client that went away (`ClientDisconnected`, a 400). The bytes
    read are put back as `wsgi.input`, so that a later `get_data()` or `request.form` reads
    the same body.
    """
    terminated = "wsgi.input_terminated" in environ
    if not terminated:
        limit = length
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    got = 0
    while got < limit:
        try:
            data = stream.read(min(_CHUNK, limit - got))
        except (OSError, ValueError):
            raise ClientDisconnected() from None
        if not data:
            if not terminated:
                raise ClientDisconnected()
            break
        parts.append(data)
        got += len(data)
    found = parts[0] if len(parts) == 1 else b"".join(parts)
    environ["wsgi.input"] = io.BytesIO(found)
    return found


def form_fields(body: bytes) -> dict[str, str]:
    """The form's fields, each name with its first value, as `request.form.items()` has them."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return {}
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name = _decoded(name)
        if name not in fields:
            fields[name] = _decoded(value)
    return fields


def _decoded(text: str) -> str:
    text = text.replace("+", " ")
    return unquote(text, errors=_ERRORS) if "%" in text else text
