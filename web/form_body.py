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

The body itself comes from `request.get_data()`, under the app's MAX_CONTENT_LENGTH as
werkzeug's parser reads it (413 beyond). tests/web/test_form_body.py compares the two on
arbitrary bodies.
"""

from __future__ import annotations

from urllib.parse import unquote

# werkzeug registers its codec error handler "werkzeug.url_quote" on import; this module uses
# it by name, so it imports werkzeug's module rather than relying on another import's order.
import werkzeug.urls  # noqa: F401

FORM = "application/x-www-form-urlencoded"
_ERRORS = "werkzeug.url_quote"


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
