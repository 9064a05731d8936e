"""The inbound rules, each alone and in the pipeline: pure functions, no Redis."""

from dataclasses import replace

import pytest

from shared.domain import Conversation, ConversationStatus, MessageKind, Participant
from shared.inbound_rules import (
    RULES,
    Decision,
    DropReason,
    Event,
    InboundContext,
    Reply,
    Suppressed,
    add_relay_prefix,
    cap_relay_parts,
    cut_to_fit,
    decide,
    drop_blocked,
    drop_own_numbers,
    out_of_session_refusal,
    require_live_route,
)
from shared.reassembly import Reassembled
from shared.relay_caps import Cap, CapVerdict
from shared.vonage_gateway import sms_parts

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
    context = InboundContext(MESSAGE, settings, served_countries=frozenset({"GB"}))
    decision = require_live_route(context, Decision(relay="hello"))
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


def test_loops_and_blocked_numbers_are_judged_first_then_keywords_then_the_route():
    # loops and blocked numbers before anything that answers (keywords, the route check's
    # out-of-session reply): neither is ever answered. Only the keyword rule, which never
    # relays, runs before the route check (STOP must work without a route).
    from shared.inbound_rules import answer_keywords

    assert RULES[:4] == (drop_own_numbers, drop_blocked, answer_keywords, require_live_route)


@pytest.mark.parametrize("number", [A, B])
def test_a_text_from_or_to_one_of_our_numbers_is_dropped_unanswered(make_settings, number):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    context = replace(routed(settings), own_numbers=frozenset({number}))
    decision = decide(context)
    assert decision.dropped is DropReason.OWN_NUMBER and decision.relay is None
    assert decision.replies == () and decision.final


def test_a_text_from_our_own_number_with_no_route_gets_no_reply(make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    context = InboundContext(MESSAGE, settings, own_numbers=frozenset({A}))
    decision = decide(context)
    assert decision.dropped is DropReason.OWN_NUMBER and decision.replies == ()


@pytest.mark.parametrize("number", [A, B])
def test_a_text_from_or_to_a_blocked_number_is_dropped_unanswered(make_settings, number):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    decision = decide(replace(routed(settings), blocked=frozenset({number})))
    assert decision.dropped is DropReason.BLOCKED and decision.relay is None
    assert decision.replies == ()
    stranger = decide(InboundContext(MESSAGE, settings, blocked=frozenset({A})))
    assert stranger.dropped is DropReason.BLOCKED and stranger.replies == ()


def test_numbers_that_are_not_ends_of_the_message_change_nothing(settings):
    context = replace(routed(settings), own_numbers=frozenset({PROXY_A}),
                      blocked=frozenset({"447400999999"}))
    assert drop_own_numbers(context, Decision(relay="hello")) == Decision(relay="hello")
    assert drop_blocked(context, Decision(relay="hello")) == Decision(relay="hello")


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


def stranger(settings, sender=A, **gathered):
    message = Reassembled("m1", sender, PROXY_A, "hello", 1)
    return InboundContext(message, settings, **{"served_countries": frozenset({"GB"}),
                                                 **gathered})


@pytest.mark.parametrize(("sender", "gathered", "reason"), [
    (A, {"replied_for": "earlier"}, Suppressed.REPEAT),
    (A, {"served_countries": frozenset({"US"})}, Suppressed.COUNTRY),
    ("33612345678", {}, Suppressed.COUNTRY),  # a French mobile; the pool serves GB
    ("449098765432", {}, Suppressed.COSTLY),  # UK premium rate (09)
    ("448712345678", {}, Suppressed.COSTLY),  # UK shared cost (0871)
    ("19005551234", {"served_countries": frozenset({"US"})}, Suppressed.COSTLY),
])
def test_an_out_of_session_reply_that_could_be_farmed_is_suppressed(
    make_settings, sender, gathered, reason
):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    decision = decide(stranger(settings, sender, **gathered))
    assert decision.dropped is DropReason.UNROUTED
    assert decision.replies == () and decision.suppressed == (reason,)
    assert out_of_session_refusal(stranger(settings, sender, **gathered)) is reason


def test_the_same_message_again_keeps_its_reply(make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    decision = decide(stranger(settings, replied_for="m1"))
    assert decision.replies == (Reply(MessageKind.OUT_OF_SESSION, "Ended."),)


@pytest.mark.parametrize(("countries", "replied"), [("FR", True), ("*", True), ("DE", False)])
def test_the_countries_setting_widens_where_replies_go(make_settings, countries, replied):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.",
                             SMSPROXY_OUT_OF_SESSION_REPLY_COUNTRIES=countries)
    decision = decide(stranger(settings, "33612345678"))
    assert bool(decision.replies) is replied


def test_a_premium_number_gets_no_reply_even_where_any_country_is_allowed(make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.",
                             SMSPROXY_OUT_OF_SESSION_REPLY_COUNTRIES="*")
    assert decide(stranger(settings, "449098765432")).suppressed == (Suppressed.COSTLY,)


def test_nothing_is_suppressed_when_no_reply_is_configured(settings):
    assert decide(stranger(settings, "449098765432")).suppressed == ()


@pytest.mark.parametrize(("over", "dropped", "window"), [
    (Cap.RATE, DropReason.RATE_CAPPED, "a few minutes"),
    (Cap.DAILY, DropReason.DAILY_CAPPED, "24 hours"),
])
def test_a_message_over_a_cap_is_not_relayed_and_the_sender_told_once(
    settings, over, dropped, window
):
    told = decide(replace(routed(settings), cap=CapVerdict(over, notify=True)))
    assert told.relay is None and told.dropped is dropped
    (notice,) = told.replies
    assert notice.kind is MessageKind.CAP_NOTICE and window in notice.text
    quiet = decide(replace(routed(settings), cap=CapVerdict(over, notify=False)))
    assert quiet.dropped is dropped and quiet.replies == ()


def test_a_message_under_the_caps_is_relayed(settings):
    assert decide(replace(routed(settings), cap=CapVerdict())) == Decision(relay="hello")


def test_the_cap_notice_template_is_a_setting(make_settings):
    settings = make_settings(SMSPROXY_CAP_NOTICE_TEMPLATE="Slow down ({window}).")
    decision = decide(replace(routed(settings), cap=CapVerdict(Cap.RATE, notify=True)))
    assert decision.replies[0].text == "Slow down (a few minutes)."


def test_at_the_daily_send_limit_automatic_replies_stop_and_relays_go_on(make_settings):
    settings = make_settings(SMSPROXY_OUT_OF_SESSION_REPLY="Ended.")
    at_limit = {"daily_limit_reached": True}
    relayed = decide(replace(routed(settings), **at_limit))
    assert relayed == Decision(relay="hello")
    capped = decide(replace(routed(settings), cap=CapVerdict(Cap.RATE, notify=True), **at_limit))
    assert capped.replies == () and capped.suppressed == (Suppressed.DAILY_LIMIT,)
    unrouted = decide(stranger(settings, **at_limit))
    assert unrouted.replies == () and unrouted.suppressed == (Suppressed.DAILY_LIMIT,)
    assert decide(stranger(settings)).replies != ()


@pytest.mark.parametrize("text", ["x" * 5000, "é" * 5000, "€" * 3000, "日本" * 1000])
def test_a_relay_is_cut_to_the_parts_cap_with_a_marker(make_settings, text):
    settings = make_settings(SMSPROXY_MAX_RELAY_PARTS="3")
    message = Reassembled("m1", A, PROXY_A, text, 30)
    c = conversation()
    decision = decide(InboundContext(message, settings, c, c.participants[0], c.participants[1]))
    assert decision.truncated and sms_parts(decision.relay) == 3
    assert decision.relay.endswith(("(...)", "[…]")) and text.startswith(decision.relay[:-5])
    # the longest cut that fits: one more character would not
    kept = decision.relay.removesuffix("(...)").removesuffix("[…]")
    marker = decision.relay[len(kept):]
    assert sms_parts(text[:len(kept) + 1] + marker) > 3


def test_a_gsm7_text_is_cut_with_a_gsm7_marker_so_it_keeps_its_room(make_settings):
    settings = make_settings(SMSPROXY_MAX_RELAY_PARTS="2")
    cut = cut_to_fit("a" * 1000, 2)
    assert cut.endswith("(...)") and len(cut) == 2 * 153
    assert cap_relay_parts(routed(settings), Decision(relay="short")) == Decision(relay="short")


def test_the_prefix_counts_toward_the_parts_cap(make_settings):
    settings = make_settings(SMSPROXY_MAX_RELAY_PARTS="1", SMSPROXY_RELAY_PREFIX="[Ride] ")
    message = Reassembled("m1", A, PROXY_A, "y" * 160, 2)
    c = conversation()
    decision = decide(InboundContext(message, settings, c, c.participants[0], c.participants[1]))
    assert decision.relay.startswith("[Ride] y") and sms_parts(decision.relay) == 1
    assert RULES[-1] is cap_relay_parts


def test_ten_parts_is_the_default_cap(settings):
    message = Reassembled("m1", A, PROXY_A, "z" * 153 * 12, 12)
    c = conversation()
    decision = decide(InboundContext(message, settings, c, c.participants[0], c.participants[1]))
    assert sms_parts(decision.relay) == 10
