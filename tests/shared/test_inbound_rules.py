"""The inbound rules, each alone and in the pipeline: pure functions, no Redis."""

import pytest

from shared.domain import Conversation, ConversationStatus, MessageKind, Participant
from shared.inbound_rules import (
    RULES,
    Decision,
    DropReason,
    Event,
    InboundContext,
    Reply,
    add_relay_prefix,
    decide,
    require_live_route,
)
from shared.reassembly import Reassembled

A, B, PROXY_A, PROXY_B = "447400100001", "447400100002", "447700900100", "447700900101"
MESSAGE = Reassembled("m1", A, PROXY_A, "hello", 1)


def conversation(status=ConversationStatus.ACTIVE):
    return Conversation(
        id="c" * 32,
        participants=(Participant(A, proxy_number=PROXY_A), Participant(B, proxy_number=PROXY_B)),
        status=status, created_at=1.0, ttl_seconds=3600,
    )


def routed(settings, status=ConversationStatus.ACTIVE):
    c = conversation(status)
    return InboundContext(MESSAGE, settings, c, c.participants[0], c.participants[1])


def test_a_routed_message_is_relayed_as_it_came(settings):
    decision = decide(routed(settings))
    assert decision == Decision(relay="hello")


def test_no_route_drops_with_reason_and_nothing_else_by_default(settings):
    decision = require_live_route(InboundContext(MESSAGE, settings), Decision(relay="hello"))
    assert decision.relay is None and decision.final
    assert decision.dropped is DropReason.UNROUTED
    assert decision.replies == () and decision.events == ()


def test_no_route_gets_the_configured_reply_and_event(make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.",
                             SMSPROXY_OUT_OF_SESSION_CALLBACK_URL="https://example.com/oos",
                             SMSPROXY_CALLBACK_SECRET="s" * 32)
    decision = require_live_route(InboundContext(MESSAGE, settings), Decision(relay="hello"))
    assert decision.replies == (Reply(MessageKind.OUT_OF_SESSION, "Ended."),)
    assert decision.events == (Event.OUT_OF_SESSION,)


@pytest.mark.parametrize("status", [ConversationStatus.CLOSED, ConversationStatus.EXPIRED,
                                    ConversationStatus.FAILED])
def test_a_finished_conversation_is_no_route(settings, status):
    assert decide(routed(settings, status)).dropped is DropReason.UNROUTED


def test_prefix_goes_before_the_text_and_never_onto_nothing(make_settings):
    settings = make_settings(SMSPROXY_RELAY_PREFIX="[Ride] ")
    context = routed(settings)
    assert add_relay_prefix(context, Decision(relay="hi")).relay == "[Ride] hi"
    assert add_relay_prefix(context, Decision(relay=None)).relay is None


def test_a_final_decision_stops_the_rules_after_it(settings):
    seen = []

    def record(context, decision):
        seen.append(decision)
        return decision

    decide(InboundContext(MESSAGE, settings), rules=(require_live_route, record))
    assert seen == []
    decide(routed(settings), rules=(require_live_route, record))
    assert seen == [Decision(relay="hello")]


def test_the_route_check_comes_before_every_rule_that_could_relay():
    # only the keyword rule runs before it, and it never relays (STOP must work without a route)
    from shared.inbound_rules import answer_keywords

    assert RULES[:2] == (answer_keywords, require_live_route)


def test_a_binary_message_is_never_relayed(settings):
    from shared.inbound_rules import never_relay_binary

    c = conversation()
    binary = Reassembled("m2", A, PROXY_A, "", 1, binary=True)
    context = InboundContext(binary, settings, c, c.participants[0], c.participants[1])
    decision = never_relay_binary(context, Decision(relay=""))
    assert decision.relay is None and decision.dropped is DropReason.BINARY and decision.final
    assert decide(context).dropped is DropReason.BINARY
    assert never_relay_binary(routed(settings), Decision(relay="x")) == Decision(relay="x")


def _texting(settings, text, *, mask=None, country="GB"):
    c = Conversation(
        id="c" * 32,
        participants=(Participant(A, proxy_number=PROXY_A, country=country),
                      Participant(B, proxy_number=PROXY_B)),
        status=ConversationStatus.ACTIVE, created_at=1.0, ttl_seconds=3600, mask=mask,
    )
    return InboundContext(Reassembled("m5", A, PROXY_A, text, 1), settings, c,
                          c.participants[0], c.participants[1])


def test_contact_details_are_masked_by_default_and_counted(settings):
    decision = decide(_texting(settings, "call me on 07911 123456 or a@example.com"))
    assert decision.relay == "call me on [hidden] or [hidden]"
    assert decision.masked == 2


def test_the_conversations_choice_wins_over_the_deployments(make_settings):
    from shared.masking import ContactKind

    text = "07911 123456, a@example.com, https://example.com/x"
    nothing = decide(_texting(make_settings(), text, mask=frozenset()))
    assert nothing.relay == text and nothing.masked == 0
    links = decide(_texting(make_settings(SMSPROXY_MASK_KINDS="none"), text,
                            mask=frozenset({ContactKind.LINK})))
    assert links.relay == "07911 123456, a@example.com, [hidden]"


def test_the_deployment_setting_and_marker_apply_to_older_conversations(make_settings):
    settings = make_settings(SMSPROXY_MASK_KINDS="email", SMSPROXY_MASK_MARKER="***")
    decision = decide(_texting(settings, "07911 123456 a@example.com"))
    assert decision.relay == "07911 123456 ***" and decision.masked == 1


def test_national_numbers_are_read_in_the_senders_country(settings):
    # the participant's country from Number Insight; without it, the number's own country
    assert decide(_texting(settings, "(212) 736-5000", country="US")).masked == 1
    assert decide(_texting(settings, "(212) 736-5000", country=None)).masked == 0
    assert decide(_texting(settings, "07911 123456", country=None)).masked == 1


def test_the_prefix_is_never_masked(make_settings):
    settings = make_settings(SMSPROXY_RELAY_PREFIX="[Call 0800 496 0000] ")
    decision = decide(_texting(settings, "hi"))
    assert decision.relay == "[Call 0800 496 0000] hi" and decision.masked == 0


def test_masking_runs_on_relays_only(settings):
    from shared.inbound_rules import mask_contact_details

    assert mask_contact_details(_texting(settings, "07911 123456"), Decision(relay=None)) \
        == Decision(relay=None)


# -- opt-out keywords -------------------------------------------------------------------------

def _says(settings, text, *, routed_=True, sender_opted_out=False, recipient_opt_out=None):
    message = Reassembled("m6", A, PROXY_A, text, 1)
    if not routed_:
        return InboundContext(message, settings, sender_opted_out=sender_opted_out)
    c = conversation()
    return InboundContext(message, settings, c, c.participants[0], c.participants[1],
                          sender_opted_out=sender_opted_out, recipient_opt_out=recipient_opt_out)


@pytest.mark.parametrize("text", ["STOP", "stop", "  Stop \n", "STOPALL", "unsubscribe", "Cancel",
                                  "END", "quit", "OPTOUT", "revoke"])
def test_an_opt_out_keyword_is_not_relayed_and_opts_the_sender_out(settings, text):
    from shared.inbound_rules import StateChange
    from shared.opt_outs import ParticipantState

    decision = decide(_says(settings, text))
    assert decision.relay is None and decision.dropped is DropReason.KEYWORD
    assert decision.replies == ()  # the confirmation only goes if the change is made
    assert decision.state_change == StateChange(
        ParticipantState.OPTED_OUT, Reply(MessageKind.OPT_OUT, settings.opt_out_reply),
        tell_counterpart=True)


@pytest.mark.parametrize("text", ["STOP please", "stop.", "don't stop", "S T O P", "STOP STOP"])
def test_only_the_whole_word_is_a_keyword(settings, text):
    decision = decide(_says(settings, text))
    assert decision.relay == text and decision.state_change is None


def test_stop_without_a_live_route_still_opts_out_and_tells_nobody_else(settings):
    decision = decide(_says(settings, "STOP", routed_=False))
    assert decision.dropped is DropReason.KEYWORD
    assert decision.state_change is not None and not decision.state_change.tell_counterpart


@pytest.mark.parametrize("text", ["START", "unstop", "Yes"])
def test_an_opt_in_keyword_opts_an_opted_out_sender_back_in(settings, text):
    from shared.opt_outs import ParticipantState

    for routed_ in (True, False):
        decision = decide(_says(settings, text, routed_=routed_, sender_opted_out=True))
        assert decision.dropped is DropReason.KEYWORD
        assert decision.state_change is not None
        assert decision.state_change.state is ParticipantState.OPTED_IN
        assert decision.state_change.confirmation == Reply(MessageKind.OPT_IN,
                                                           settings.opt_in_reply)


def test_yes_from_someone_not_opted_out_is_an_answer_to_the_other_side(settings):
    assert decide(_says(settings, "Yes")).relay == "Yes"


@pytest.mark.parametrize("text", ["HELP", "info", " Help "])
def test_help_is_answered_and_not_relayed(settings, text):
    decision = decide(_says(settings, text))
    assert decision.relay is None and decision.dropped is DropReason.KEYWORD
    assert decision.replies == (Reply(MessageKind.HELP, settings.help_reply),)
    assert decision.state_change is None


def test_help_without_a_route_is_an_out_of_session_text(settings):
    assert decide(_says(settings, "HELP", routed_=False)).dropped is DropReason.UNROUTED


def test_the_keyword_lists_and_replies_are_settings(make_settings):
    settings = make_settings(SMSPROXY_OPT_OUT_KEYWORDS="arret, Stop", SMSPROXY_HELP_KEYWORDS="",
                             SMSPROXY_OPT_OUT_REPLY="Bye.")
    decision = decide(_says(settings, "ARRET"))
    assert decision.state_change is not None
    assert decision.state_change.confirmation.text == "Bye."
    assert decide(_says(settings, "END")).relay == "END"
    assert decide(_says(settings, "HELP")).relay == "HELP"


def test_a_text_to_someone_who_opted_out_is_withheld_with_a_notice_once_per_opt_out(settings):
    from shared.opt_outs import OptOut

    decision = decide(_says(settings, "are you there?", recipient_opt_out=OptOut("stop-1", 5.0)))
    assert decision.relay is None and decision.dropped is DropReason.RECIPIENT_OPTED_OUT
    (notice,) = decision.replies
    assert notice.kind is MessageKind.OPTED_OUT_NOTICE and notice.once_per == "stop-1"
    assert notice.text.startswith("your contact has opted out")


def test_the_notice_names_who_opted_out(make_settings):
    from shared.opt_outs import OptOut

    settings = make_settings(SMSPROXY_OPTED_OUT_NOTICE_TEMPLATE="{counterpart} left.")
    c = conversation()
    named = (c.participants[0], Participant(B, proxy_number=PROXY_B, display_name="Dev"))
    context = InboundContext(MESSAGE, settings, c, named[0], named[1],
                             recipient_opt_out=OptOut("stop-1", 5.0))
    assert decide(context).replies[0].text == "Dev left."


def test_no_notice_to_a_sender_who_opted_out_of_their_own_number(settings):
    from shared.opt_outs import OptOut

    decision = decide(_says(settings, "hi", sender_opted_out=True,
                            recipient_opt_out=OptOut("stop-1", 5.0)))
    assert decision.dropped is DropReason.RECIPIENT_OPTED_OUT and decision.replies == ()
