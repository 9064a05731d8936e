"""The operations console through Flask's test client: sign-in, sessions, CSRF, scoping, pages,
actions and their audit."""

from __future__ import annotations

import re
import time

import pytest

from shared.domain import Conversation, ConversationStatus, MessageKind, OutboundSms, Participant
from shared.gauges import Heartbeats
from shared.jobs import TaskName
from shared.keys import Keys
from shared.metrics import RELAY_LATENCY
from shared.opt_outs import ParticipantState
from shared.settings import SettingsError
from tests.conftest import build_settings
from web.app import create_app
from web.services import services

RIDES_TOKEN = "rides-0123456789abcdef0123456789abcdef"
SHOP_TOKEN = "shop-0123456789abcdef0123456789abcdef"
OPS_TOKEN = "ops-0123456789abcdef0123456789abcdef00"
CONSOLE = {
    "SMSPROXY_API_TOKENS": f"rides:{RIDES_TOKEN},shop:{SHOP_TOKEN},ops:{OPS_TOKEN}",
    "SMSPROXY_CONSOLE_SECRET_KEY": "console-secret-0123456789abcdef0123456789",
    "SMSPROXY_OPERATORS": "ops",
    "SMSPROXY_POOL_TARGETS": "GB=2",
}
RIDER, DRIVER = "447400123456", "447400654321"
RIDER_PROXY, DRIVER_PROXY = "447700900001", "447700900002"
CONVERSATION_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def make_console(fake_redis, publisher):
    def build(**env: str):
        app = create_app(build_settings(**{**CONSOLE, **env}), redis_client=fake_redis,
                         publisher=publisher)
        return app, app.test_client()

    return build


@pytest.fixture
def app_and_browser(make_console):
    return make_console()


@pytest.fixture
def browser(app_and_browser):
    return app_and_browser[1]


def csrf(page) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(browser, token: str = RIDES_TOKEN):
    token_field = csrf(browser.get("/console/login"))
    return browser.post("/console/login", data={"csrf_token": token_field, "token": token})


def seed(app, client: str = "rides", conversation_id: str = CONVERSATION_ID) -> Conversation:
    with app.app_context():
        svc = services()
    created = time.time()
    conversation = Conversation(
        id=conversation_id,
        participants=(
            Participant(RIDER, RIDER_PROXY, "GB", "Rita"),
            Participant(DRIVER, DRIVER_PROXY, "GB", "Dev"),
        ),
        status=ConversationStatus.ACTIVE, created_at=created, ttl_seconds=3600,
        expires_at=created + 3600, client=client,
    )
    svc.conversation_store.add(conversation)
    svc.messages.record_inbound(conversation_id, "in-1", RIDER, 2, "hello")
    svc.messages.owe(OutboundSms(f"relay-{conversation_id}", conversation_id, MessageKind.RELAY,
                                 DRIVER_PROXY, DRIVER, "hello"))
    svc.messages.mark_submitted(f"relay-{conversation_id}", ["v-1", "v-2"], retain_body=False)
    svc.messages.apply_receipt(f"relay-{conversation_id}", "v-1", "delivered", "0",
                               retain_body=False)
    svc.messages.owe(OutboundSms(f"fail-{conversation_id}", conversation_id, MessageKind.RELAY,
                                 RIDER_PROXY, RIDER, "hi"))
    svc.messages.mark_failed(f"fail-{conversation_id}", "6", "unroutable", retain_body=False)
    svc.inventory.add(RIDER_PROXY, "GB", monthly_cost="0.90")
    svc.inventory.add(DRIVER_PROXY, "GB", monthly_cost="0.90")
    return conversation


# -- off by default, settings -----------------------------------------------------------------


def test_without_a_secret_key_there_is_no_console(make_console):
    _, browser = make_console(SMSPROXY_CONSOLE_SECRET_KEY="")
    assert browser.get("/console").status_code == 404
    assert browser.get("/console/login").status_code == 404


@pytest.mark.parametrize("env, named", [
    ({"SMSPROXY_CONSOLE_SECRET_KEY": "too-short"}, "SMSPROXY_CONSOLE_SECRET_KEY"),
    ({"SMSPROXY_OPERATORS": "ops,nobody"}, "SMSPROXY_OPERATORS"),
    ({"SMSPROXY_CONSOLE_LOGIN_RATE_LIMIT": "none"}, "SMSPROXY_CONSOLE_LOGIN_RATE_LIMIT"),
])
def test_unusable_console_settings_stop_the_process(env, named):
    with pytest.raises(SettingsError, match=named):
        build_settings(**{**CONSOLE, **env})


# -- signing in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/console", "/console/", "/console/conversations", f"/console/conversations/{CONVERSATION_ID}",
    "/console/pool", "/console/audit", "/console/blocked",
])
def test_without_a_session_every_page_redirects_to_the_sign_in(browser, path):
    answer = browser.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/console/login")


def test_a_bad_token_is_a_form_error_and_signs_nobody_in(browser, fake_redis):
    answer = sign_in(browser, "not-a-token-of-anyone-0123456789abcdef")
    assert answer.status_code == 401
    assert "That token is not valid." in answer.text
    assert 'name="token"' in answer.text
    assert browser.get("/console/conversations").status_code == 302
    assert not list(fake_redis.scan_iter(Keys().console_session("*")))


def test_signing_in_sets_a_strict_cookie_naming_a_session_kept_in_redis(browser, fake_redis):
    answer = sign_in(browser)
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("smsproxy_console=")
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/console", "Expires="):
        assert flag in cookie
    assert RIDES_TOKEN not in cookie
    (key,) = fake_redis.scan_iter(Keys().console_session("*"))
    assert fake_redis.hget(key, "client") == "rides"
    assert 0 < fake_redis.ttl(key) <= 28800
    assert RIDES_TOKEN not in str(fake_redis.hgetall(key))
    assert browser.get("/console/conversations").status_code == 200


def test_the_secure_flag_can_be_turned_off_for_plain_http_development(make_console):
    _, browser = make_console(SMSPROXY_CONSOLE_SECURE_COOKIE="false")
    assert "Secure" not in sign_in(browser).headers["Set-Cookie"]


def test_a_session_ends_when_its_lifetime_runs_out(browser, fake_redis, monkeypatch):
    sign_in(browser)
    assert browser.get("/console/conversations").status_code == 200
    later = time.time() + 28800
    monkeypatch.setattr("web.console.time.time", lambda: later)
    answer = browser.get("/console/conversations")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/login")


def test_a_session_redis_has_expired_is_signed_out(browser, fake_redis):
    sign_in(browser)
    for key in fake_redis.scan_iter(Keys().console_session("*")):
        fake_redis.delete(key)  # what Redis does at the key's TTL
    assert browser.get("/console/conversations").status_code == 302


def test_signing_out_ends_the_session_even_for_a_copied_cookie(app_and_browser, fake_redis):
    app, browser = app_and_browser
    sign_in(browser)
    copied = browser.get_cookie("smsproxy_console", path="/console").value
    page = browser.get("/console/conversations")
    answer = browser.post("/console/logout", data={"csrf_token": csrf(page)})
    assert answer.headers["Location"].endswith("/console/login")
    thief = app.test_client()
    thief.set_cookie("smsproxy_console", copied, path="/console")
    assert thief.get("/console/conversations").status_code == 302


def test_a_rotated_token_ends_the_sessions_signed_in_with_the_old_one(make_console, fake_redis):
    _, browser = make_console()
    sign_in(browser)
    copied = browser.get_cookie("smsproxy_console", path="/console").value
    rotated = f"rides:rides-rotated-0123456789abcdef0123456789,shop:{SHOP_TOKEN},ops:{OPS_TOKEN}"
    _, restarted = make_console(SMSPROXY_API_TOKENS=rotated)
    restarted.set_cookie("smsproxy_console", copied, path="/console")
    assert restarted.get("/console/conversations").status_code == 302


def test_sign_in_attempts_are_rate_limited_per_address(make_console):
    _, browser = make_console(SMSPROXY_CONSOLE_LOGIN_RATE_LIMIT="3/minute")
    answers = [sign_in(browser, f"guess-{i}-0123456789abcdef0123456789") for i in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    limited = sign_in(browser)  # even the right token waits: the address is out of attempts
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 61
    assert "Too many attempts" in limited.text


# -- CSRF ---------------------------------------------------------------------------------------


def test_every_form_needs_its_csrf_token(app_and_browser, publisher):
    app, browser = app_and_browser
    seed(app)
    assert browser.post("/console/login", data={"token": RIDES_TOKEN}).status_code == 400
    sign_in(browser, OPS_TOKEN)
    for path, form in [
        ("/console/logout", {}),
        ("/console/conversations/search", {"q": CONVERSATION_ID}),
        ("/console/pool/maintain", {}),
        ("/console/pool/drain", {"number": RIDER_PROXY}),
        ("/console/blocked", {"number": f"+{RIDER}"}),
        ("/console/blocked/unblock", {"number": f"+{RIDER}"}),
    ]:
        for token in (None, "forged"):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            answer = browser.post(path, data=data)
            assert answer.status_code == 400, (path, token)
            assert "security token" in answer.text
    assert publisher.published == []
    with app.app_context():
        assert services().blocked.get(RIDER) is None
    assert browser.get("/console/conversations").status_code == 200  # still signed in


def test_the_csrf_token_changes_at_sign_in(browser):
    before = csrf(browser.get("/console/login"))
    sign_in(browser)
    assert csrf(browser.get("/console/conversations")) != before


# -- conversations ------------------------------------------------------------------------------


def test_another_clients_conversation_is_not_found(app_and_browser):
    app, browser = app_and_browser
    seed(app, client="shop")
    sign_in(browser)
    page = browser.get("/console/conversations")
    assert CONVERSATION_ID not in page.text
    assert browser.get(f"/console/conversations/{CONVERSATION_ID}").status_code == 404
    closing = browser.post(f"/console/conversations/{CONVERSATION_ID}/close",
                           data={"csrf_token": csrf(page)})
    assert closing.status_code == 404
    with app.app_context():
        assert services().conversation_store.get(CONVERSATION_ID).status is (
            ConversationStatus.ACTIVE
        )
    by_number = browser.post("/console/conversations/search",
                             data={"csrf_token": csrf(page), "q": f"+{RIDER}"})
    assert CONVERSATION_ID not in by_number.text


def test_search_by_number_is_a_post_and_shows_the_number_masked(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    sign_in(browser)
    page = browser.get("/console/conversations")
    found = browser.post("/console/conversations/search",
                         data={"csrf_token": csrf(page), "q": "+44 7400 123456"})
    assert found.status_code == 200
    assert CONVERSATION_ID in found.text
    assert "Conversations with +***3456" in found.text
    assert RIDER not in found.text and DRIVER not in found.text
    assert browser.get(f"/console/conversations?q={RIDER}").status_code == 200  # ignored


def test_search_by_id_goes_to_the_conversation(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    sign_in(browser)
    page = browser.get("/console/conversations")
    answer = browser.post("/console/conversations/search",
                          data={"csrf_token": csrf(page), "q": CONVERSATION_ID.upper()})
    assert answer.headers["Location"].endswith(f"/console/conversations/{CONVERSATION_ID}")
    nonsense = browser.post("/console/conversations/search",
                            data={"csrf_token": csrf(page), "q": "hello"})
    assert nonsense.status_code == 400 and "not a conversation id" in nonsense.text


def test_the_conversation_page_shows_status_expiry_and_the_trail_per_part(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    sign_in(browser)
    page = browser.get(f"/console/conversations/{CONVERSATION_ID}")
    assert page.status_code == 200
    text = page.text
    assert "active" in text and "Expires" in text
    assert "+***3456" in text and "+***4321" in text
    assert RIDER not in text and DRIVER not in text
    assert f"+{DRIVER_PROXY}" in text  # the proxy's own numbers are whole, as in /v1
    assert "part 1: delivered" in text and "part 2: no receipt yet" in text
    assert "6 unroutable" in text
    assert "hello" not in text  # bodies are not retained by default
    assert f"<title>Conversation {CONVERSATION_ID[:8]}" in text


def test_closing_from_the_console_closes_audits_and_counts(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    sign_in(browser)
    page = browser.get(f"/console/conversations/{CONVERSATION_ID}")
    answer = browser.post(f"/console/conversations/{CONVERSATION_ID}/close",
                          data={"csrf_token": csrf(page)})
    assert answer.status_code == 302
    after = browser.get(answer.headers["Location"])
    assert "Conversation closed" in after.text and "Close conversation" not in after.text
    with app.app_context():
        svc = services()
        assert svc.conversation_store.get(CONVERSATION_ID).status is ConversationStatus.CLOSED
        entries = svc.console_audit.recent()
        counts = svc.counters.snapshot()
    assert [(e.who, e.action, e.subject) for e in entries][:2] == [
        ("rides", "close", CONVERSATION_ID), ("rides", "sign_in", ""),
    ]
    assert counts["smsproxy.console.close"] == 1 and counts["smsproxy.console.sign_in"] == 1


# -- operator pages -----------------------------------------------------------------------------


def test_a_client_that_is_not_an_operator_sees_only_its_conversations(browser):
    sign_in(browser)
    home = browser.get("/console")
    assert home.headers["Location"].endswith("/console/conversations")
    page = browser.get("/console/conversations")
    assert "/console/pool" not in page.text
    assert "/console/blocked" not in page.text
    for path in ("/console/pool", "/console/audit", "/console/blocked"):
        assert browser.get(path).status_code == 403
    for path, form in [("/console/pool/maintain", {}),
                       ("/console/blocked", {"number": f"+{RIDER}"}),
                       ("/console/blocked/unblock", {"number": f"+{RIDER}"})]:
        assert browser.post(path, data={"csrf_token": csrf(page), **form}).status_code == 403


def test_the_overview_shows_counters_pool_and_failures(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    with app.app_context():
        services().counters.incr("smsproxy.outbound.failed", 7)
        services().counters.incr("smsproxy.webhooks.inbound.accepted", 3)
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console")
    assert page.status_code == 200
    assert "sends failed" in page.text and ">7<" in page.text
    assert "inbound.accepted" in page.text
    assert "GB" in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["Cache-Control"] == "no-store"


def test_run_maintenance_enqueues_the_pool_task_and_audits(app_and_browser, publisher):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console/pool")
    answer = browser.post("/console/pool/maintain", data={"csrf_token": csrf(page)})
    assert answer.status_code == 302
    assert publisher.published == [(TaskName.MAINTAIN_POOL, None)]
    with app.app_context():
        assert services().console_audit.recent()[0].action == "run_maintenance"
        assert services().counters.snapshot()["smsproxy.console.run_maintenance"] == 1


def test_drain_stops_new_conversations_on_a_number_and_audits_it_masked(app_and_browser):
    app, browser = app_and_browser
    seed(app)
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console/pool")
    assert f"+{RIDER_PROXY}" in page.text and "1.80 a month" in page.text
    answer = browser.post("/console/pool/drain",
                          data={"csrf_token": csrf(page), "number": RIDER_PROXY})
    after = browser.get(answer.headers["Location"])
    assert "is draining" in after.text
    with app.app_context():
        svc = services()
        assert [n.state for n in svc.inventory.numbers() if n.msisdn == RIDER_PROXY] == [
            "draining"
        ]
        assert svc.inventory.size("GB") == 1
        entry = svc.console_audit.recent()[0]
    assert (entry.who, entry.action, entry.subject) == ("ops", "drain", "***0001")
    again = browser.post("/console/pool/drain",
                         data={"csrf_token": csrf(after), "number": "447700900999"})
    assert "nothing changed" in browser.get(again.headers["Location"]).text
    with app.app_context():
        assert "447700900999" not in {n.msisdn for n in services().inventory.numbers()}


def test_the_audit_page_lists_who_did_what(app_and_browser):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console/audit")
    assert page.status_code == 200
    assert "sign_in" in page.text and "ops" in page.text


def test_the_overview_shows_workers_queues_sends_in_doubt_and_latency(app_and_browser,
                                                                       fake_redis):
    app, browser = app_and_browser
    with app.app_context():
        svc = services()
        Heartbeats(fake_redis).beat("worker1@host")
        fake_redis.lpush("outbound", "a job", "another")
        fake_redis.zadd(Keys().outbound_in_doubt(), {"relay-x": time.time()})
        for seconds in (0.3, 0.3, 0.4, 0.4):
            svc.counters.observe(RELAY_LATENCY, seconds)
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console").text
    workers = page[page.index('id="workers"'):page.index('id="queues"')]
    assert re.search(r"workers alive[^<]*</th><td>1<", workers)
    assert re.search(r'class="bad"><th scope="row">sends in doubt[^<]*</th><td>1<', workers)
    queues = page[page.index('id="queues"'):page.index('id="latency"')]
    assert "<td>outbound</td><td>2</td>" in queues and "<td>pool</td><td>0</td>" in queues
    latency = page[page.index('id="latency"'):]
    assert re.search(r"accepted by Vonage</th><td>375 ms</td><td>488 ms</td><td>4</td>",
                     latency)
    assert "inbound webhook handling</th><td>-</td><td>-</td><td>0</td>" in latency


def test_the_overview_says_when_the_queues_are_not_in_a_redis(make_console):
    _, browser = make_console(CELERY_BROKER_URL="amqp://guest@rabbit//")
    sign_in(browser, OPS_TOKEN)
    page = browser.get("/console").text
    assert "The broker is not a Redis" in page and "workers alive" in page


# -- opt-outs on the conversation page ----------------------------------------------------------


def test_the_conversation_page_shows_who_opted_out_since_when_and_why_texts_were_held(
    app_and_browser,
):
    app, browser = app_and_browser
    seed(app)
    with app.app_context():
        svc = services()
        svc.messages.record_inbound(CONVERSATION_ID, "in-stop", DRIVER, 1, None,
                                    participant_state="opted_out", not_relayed="keyword")
        svc.opt_outs.change(DRIVER, DRIVER_PROXY, ParticipantState.OPTED_OUT, "in-stop")
        svc.messages.record_inbound(CONVERSATION_ID, "in-held", RIDER, 1, None,
                                    not_relayed="recipient_opted_out")
        svc.messages.record_inbound(CONVERSATION_ID, "in-masked", RIDER, 1, None, masked=2)
        stopped_at = svc.opt_outs.get(DRIVER, DRIVER_PROXY).at
    sign_in(browser)
    page = browser.get(f"/console/conversations/{CONVERSATION_ID}").text
    rider_row, driver_row = re.findall(r'<tr class="participant[^"]*">.*?</tr>', page, re.S)
    assert "+***3456" in rider_row and "receives texts" in rider_row
    assert "opted-out" in driver_row and "opted out" in driver_row
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stopped_at)) in driver_row
    assert "sender opted out" in page and "not relayed: keyword" in page
    assert "not relayed: recipient_opted_out" in page
    assert "the other side opted out of their number" in page
    assert "2 contact details hidden" in page
    assert RIDER not in page and DRIVER not in page


# -- blocked numbers ----------------------------------------------------------------------------


def _block(browser, number: str, reason: str = ""):
    page = browser.get("/console/blocked")
    return browser.post("/console/blocked",
                        data={"csrf_token": csrf(page), "number": number, "reason": reason})


def test_an_operator_blocks_a_number_audited_counted_and_listed_masked(app_and_browser):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    answer = _block(browser, "+44 7400 123456", "reported for spam")
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/console/blocked")
    listed = browser.get("/console/blocked")
    assert "is blocked" in listed.text
    assert "+***3456" in listed.text and "reported for spam" in listed.text and "GB" in listed.text
    assert RIDER not in listed.text
    with app.app_context():
        svc = services()
        entry = svc.blocked.get(RIDER)
        audit = svc.console_audit.recent()[0]
        counts = svc.counters.snapshot()
    assert entry is not None and entry.reason == "reported for spam"
    assert (audit.who, audit.action, audit.subject) == ("ops", "block", "***3456")
    assert counts["smsproxy.console.block"] == 1 and counts["smsproxy.blocked.added"] == 1


@pytest.mark.parametrize("number, reason, says", [
    ("hello", "", "not a phone number"),
    ("+447400123456", "x" * 201, "1 to 200 characters"),
])
def test_a_bad_block_form_is_a_form_error_and_blocks_nothing(app_and_browser, number, reason,
                                                             says):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    answer = _block(browser, number, reason)
    assert answer.status_code == 400 and says in answer.text
    with app.app_context():
        assert services().blocked.page()[0] == []


def test_unblocking_by_a_rows_handle_carries_no_number(app_and_browser):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    _block(browser, f"+{RIDER}")
    _block(browser, f"+{DRIVER}", "abuse")
    page = browser.get("/console/blocked")
    assert RIDER not in page.text and DRIVER not in page.text
    handles = re.findall(r'name="handle" value="([0-9a-f]{32})"', page.text)
    assert len(handles) == 2
    answer = browser.post("/console/blocked/unblock",
                          data={"csrf_token": csrf(page), "handle": handles[1]})
    assert answer.status_code == 302
    after = browser.get("/console/blocked")
    assert "+***4321 is unblocked" in after.text.replace("Number ", "")
    with app.app_context():
        svc = services()
        assert svc.blocked.get(DRIVER) is None and svc.blocked.get(RIDER) is not None
        audit = svc.console_audit.recent()[0]
        assert svc.counters.snapshot()["smsproxy.console.unblock"] == 1
    assert (audit.action, audit.subject) == ("unblock", "***4321")


def test_a_handle_is_worthless_to_another_sign_in(app_and_browser):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    _block(browser, f"+{RIDER}")
    (handle,) = re.findall(r'name="handle" value="([0-9a-f]{32})"',
                           browser.get("/console/blocked").text)
    other = app.test_client()
    sign_in(other, OPS_TOKEN)
    page = other.get("/console")
    answer = other.post("/console/blocked/unblock", data={"csrf_token": csrf(page),
                                                          "handle": handle})
    assert answer.status_code == 404
    with app.app_context():
        assert services().blocked.get(RIDER) is not None


def test_unblocking_by_the_number_typed_again(app_and_browser):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    _block(browser, f"+{RIDER}")
    page = browser.get("/console/blocked")
    answer = browser.post("/console/blocked/unblock",
                          data={"csrf_token": csrf(page), "number": "0044 7400 123456"})
    assert "is unblocked" in browser.get(answer.headers["Location"]).text
    again = browser.post("/console/blocked/unblock",
                         data={"csrf_token": csrf(page), "number": f"+{RIDER}"})
    assert "was not blocked" in browser.get(again.headers["Location"]).text
    with app.app_context():
        assert services().blocked.get(RIDER) is None
        actions = [e.action for e in services().console_audit.recent()]
    assert actions.count("unblock") == 1  # nothing changed the second time: nothing audited


def test_the_list_pages_through_handles_never_numbers(app_and_browser, monkeypatch):
    monkeypatch.setattr("web.console.BLOCKED_PAGE", 2)
    app, browser = app_and_browser
    numbers = [f"4474001234{i:02d}" for i in range(5)]
    with app.app_context():
        for msisdn in numbers:
            services().blocked.block(msisdn, time.time())
    sign_in(browser, OPS_TOKEN)
    seen: list[str] = []
    page = browser.get("/console/blocked")
    while True:
        assert not any(n in page.text for n in numbers)
        seen += re.findall(r"<td>\+\*\*\*(\d{4})", page.text)
        following = re.search(r'href="(/console/blocked\?after=[0-9a-f]{32})">Next page',
                              page.text)
        if following is None:
            break
        page = browser.get(following.group(1))
    assert seen == [n[-4:] for n in numbers]
    assert browser.get("/console/blocked?after=" + "0" * 32).status_code == 404
    assert browser.get(f"/console/blocked?after={numbers[0]}").status_code == 404


def test_signing_out_forgets_the_handles(app_and_browser, fake_redis):
    app, browser = app_and_browser
    sign_in(browser, OPS_TOKEN)
    _block(browser, f"+{RIDER}")
    page = browser.get("/console/blocked")
    assert list(fake_redis.scan_iter(Keys().console_handles("*")))
    browser.post("/console/logout", data={"csrf_token": csrf(page)})
    assert not list(fake_redis.scan_iter(Keys().console_handles("*")))
