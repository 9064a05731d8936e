"""Message templates: literal text and one named placeholder, rendered by plain replacement.

Never `str.format`: a template is written by an operator or a marketplace client, and format
specs (`{counterpart:>99999999}`) build gigabytes, while `{0}` or `{x.y}` fail at send time,
after the conversation is active.
"""

from __future__ import annotations

# The longest text a template may render to: four SMS parts of 160 characters. A template
# that repeats its placeholder multiplies the name; a cap bounds what one conversation costs.
MAX_RENDERED_TEXT = 640


class TemplateError(ValueError):
    """A template holds a brace other than its one placeholder; the message says so."""


def check_template(template: str, placeholder: str) -> str:
    """`template` when it is literal text and bare `{placeholder}`s only, else TemplateError."""
    rest = template.replace("{" + placeholder + "}", "")
    if "{" in rest or "}" in rest:
        raise TemplateError(
            f"may hold only literal text and {{{placeholder}}} (no other braces)"
        )
    return template


def render(template: str, placeholder: str, value: str) -> str:
    """Each bare `{placeholder}` replaced by `value`, the result cut at MAX_RENDERED_TEXT."""
    return template.replace("{" + placeholder + "}", value)[:MAX_RENDERED_TEXT]


def check_literal(template: str) -> str:
    """`template` when it is literal text (no braces at all), else TemplateError."""
    if "{" in template or "}" in template:
        raise TemplateError("must be literal text (no braces)")
    return template
