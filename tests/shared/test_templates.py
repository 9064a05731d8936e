"""Templates are literal text and one bare placeholder, rendered by replacement (issue 12.2)."""

import pytest

from shared import outbound
from shared.domain import Conversation, ConversationStatus, Participant
from shared.settings import Settings, SettingsError
from shared.templates import MAX_RENDERED_TEXT, TemplateError, check_template, render


@pytest.mark.parametrize("template", [
    "", "plain text", "Hi {counterpart}", "{counterpart} and {counterpart} again",
    "Unicode – ✓ {counterpart}", "{counterpart}",
])
def test_literal_text_and_bare_placeholders_are_accepted(template):
    assert check_template(template, "counterpart") == template


@pytest.mark.parametrize("template", [
    "{counterpart:>99999999}" * 8, "{0}", "{}", "{counterpart!r}", "{counterpart.__class__}",
    "{counterpart[0]}", "{number}", "{{counterpart}}", "a } b", "a { b", "{ counterpart }",
    "{Counterpart}",
])
def test_anything_else_with_a_brace_is_refused(template):
    with pytest.raises(TemplateError, match=r"\{counterpart\}"):
        check_template(template, "counterpart")


def test_render_is_plain_replacement():
    assert render("Hi {counterpart}, {counterpart}!", "counterpart", "{0} Rita") == (
        "Hi {0} Rita, {0} Rita!"
    )


def test_the_rendered_text_is_capped():
    template = "{counterpart}" * 36  # 468 characters: within the 480 a request may send
    text = render(template, "counterpart", "x" * 64)
    assert len(text) == MAX_RENDERED_TEXT


def _conversation(name):
    return Conversation(
        id="c" * 32, status=ConversationStatus.ACTIVE, created_at=0.0, ttl_seconds=60,
        participants=(Participant("447400111111", proxy_number="447700900100"),
                      Participant("447400222222", display_name=name,
                                  proxy_number="447700900101")),
    )


def test_an_intro_with_a_format_spec_is_sent_literally_and_bounded():
    """Stored before the check: `str.format_map` built a 100 MB text from this one."""
    sms = outbound.intro(_conversation("Rita"), 0, "{counterpart:>99999999}" * 2 + "{counterpart}")
    assert sms.text == "{counterpart:>99999999}{counterpart:>99999999}Rita"


def test_an_intro_with_a_positional_field_does_not_fail():
    assert outbound.intro(_conversation("Rita"), 0, "{0} {counterpart}").text == "{0} Rita"


def test_a_long_intro_is_capped():
    sms = outbound.intro(_conversation("R" * 64), 0, "{counterpart}" * 36)
    assert len(sms.text) == MAX_RENDERED_TEXT


@pytest.mark.parametrize(("variable", "template"), [
    ("SMSPROXY_INTRO_TEMPLATE", "Hi {counterpart:>9999}"),
    ("SMSPROXY_INTRO_TEMPLATE", "Hi {0}"),
    ("SMSPROXY_NUMBER_CHANGE_TEMPLATE", "Text {counterpart}"),
    ("SMSPROXY_NUMBER_CHANGE_TEMPLATE", "Text {number!s}"),
])
def test_a_settings_template_with_other_braces_is_refused_at_start(variable, template):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: template})


def test_the_default_templates_pass():
    settings = Settings.from_env({})
    assert "{counterpart}" in settings.intro_template
    assert "{number}" in settings.number_change_template
