"""The operations console in a real browser over the whole stack: gunicorn, a Celery worker,
the sandbox, Redis. Sign in, find a conversation by a number, read its trail, close it, run
pool maintenance and drain a number, block and unblock numbers, see a participant who texted
STOP; and the pages on a phone's screen."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from devtools.stack import API_TOKEN, Stack, StackConfig

pytestmark = pytest.mark.e2e

RIDER = "447400123456"
DRIVER = "447400654321"
# a second pair, for the opt-out: their conversation stays open
GUEST, HOST = "447400123888", "447400654999"
# numbers the operator blocks (nobody's in the other tests)
SPAMMER, PRANKSTER = "447400777001", "447400777002"
ARRIVES = 30_000  # ms: an upper bound for a job's trip through the proxy, not a measurement
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2,DE=1")
    with Stack(config) as running:
        running.provision_pool(expected=3)
        yield running


@pytest.fixture(scope="module")
def conversation(stack: Stack) -> dict[str, Any]:
    """A conversation with an intro each way and one relayed text, delivered."""
    assert stack.sandbox is not None
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{RIDER}", "display_name": "Rita"},
                         {"number": f"+{DRIVER}", "display_name": "Dev"}],
    }).json()
    active = stack.wait_for_status(created["id"], "active")
    rider_proxy = active["participants"][0]["proxy_number"]
    stack.sandbox.client.send_from_handset(RIDER, rider_proxy.lstrip("+"), "north entrance")
    stack.wait_for_trail(created["id"], {"delivered"}, count=3)  # two intros and the relay
    return active


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SMSPROXY_UPDATE_DOCS_IMAGES"):  # regenerates docs/images/console-*.png
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGES / f"{name}.png")


def signed_in(browser: Browser, stack: Stack, width: int = 1280, height: int = 900) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{stack.web_url}/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.get_by_label("API token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def expect_after_reloads(page: Page, selector: str, text: str, tries: int = 60) -> None:
    """Reload until `selector` shows `text` (each look waits up to half a second)."""
    for _ in range(tries - 1):
        page.reload()
        try:
            expect(page.locator(selector)).to_contain_text(text, timeout=500)
            return
        except AssertionError:
            continue
    page.reload()
    expect(page.locator(selector)).to_contain_text(text, timeout=500)


def test_sign_in_find_read_and_close_a_conversation(
    browser: Browser, stack: Stack, conversation: dict[str, Any], tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{stack.web_url}/console/conversations")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.get_by_label("API token").fill("not-the-token-0123456789abcdef0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    screenshot(page, "console-login", tmp_path)

    page.get_by_label("API token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    overview = page.locator("main")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(overview).to_contain_text("Sends by outcome")
    expect(overview.locator("table").first).to_contain_text("DE")
    # the worker's heartbeat, and the relay's latency from the histogram
    expect(page.locator("#workers tr").first).to_contain_text("workers alive")
    expect(page.locator("#workers tr").first.locator("td")).not_to_have_text("0")
    expect(page.locator("#queues")).to_contain_text("outbound")
    relay = page.locator("#latency tr").filter(has_text="accepted by Vonage")
    expect(relay.locator("td").last).not_to_have_text("0")
    expect(relay.locator("td").first).not_to_have_text("-")
    screenshot(page, "console-overview", tmp_path)

    # the rider's number is searched for by a POSTed form: it never enters a URL
    page.get_by_role("link", name="Conversations").click()
    page.get_by_label("Find a conversation").fill(f"+{RIDER}")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading")).to_have_text("Conversations with +***3456")
    assert RIDER not in page.url and RIDER not in page.content()
    assert DRIVER not in page.content()
    screenshot(page, "console-conversations", tmp_path)
    page.get_by_role("link", name=conversation["id"]).click()

    expect(page).to_have_url(re.compile(rf"/console/conversations/{conversation['id']}$"))
    expect(page).to_have_title(f"Conversation {conversation['id'][:8]} · smsproxy console")
    expect(page.locator("#status")).to_have_text("active")
    trail = page.locator("table.trail")
    expect(trail.locator("tr.outbound")).to_have_count(3)
    expect(trail.locator("tr.inbound")).to_have_count(1)
    expect(trail.locator("tr.outbound").filter(has_text="relay")).to_contain_text(
        "part 1: delivered"
    )
    assert RIDER not in page.content() and DRIVER not in page.content()
    screenshot(page, "console-conversation", tmp_path)

    page.get_by_role("button", name="Close conversation").click()
    expect(page.get_by_role("status")).to_contain_text("Conversation closed")
    expect(page.locator("#status")).to_have_text("closed")
    assert stack.api("GET", f"/v1/conversations/{conversation['id']}").json()["status"] == (
        "closed"
    )


def test_run_maintenance_and_drain_a_number_from_the_pool_page(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    page = signed_in(browser, stack)
    page.get_by_role("link", name="Pool").click()
    germany = page.locator("#country-DE")
    expect(germany).to_contain_text("1 numbers · 1 take new conversations (target 1)")
    expect(germany).to_contain_text("2.50 a month")

    # draining Germany's only number: maintenance then buys another to meet the target
    number = germany.locator("tbody tr").first.locator("td").first.inner_text()
    germany.get_by_role("button", name=f"Drain {number}").click()
    expect(page.get_by_role("status")).to_contain_text("is draining")
    expect(page.locator("#country-DE")).to_contain_text("0 take new conversations")

    page.get_by_role("button", name="Run maintenance now").click()
    expect(page.get_by_role("status")).to_contain_text("Pool maintenance is queued")
    # the page is rendered by the server: what the worker bought shows on a later load
    expect_after_reloads(
        page, "#country-DE", "2 numbers · 1 take new conversations (target 1) · 1 draining"
    )
    screenshot(page, "console-pool", tmp_path)

    page.get_by_role("link", name="Audit").click()
    rows = page.locator("table.list tbody tr").filter(has_text="dev")
    expect(rows.filter(has_text="drain").first).to_contain_text("***")
    expect(rows.filter(has_text="run_maintenance").first).to_be_visible()
    screenshot(page, "console-audit", tmp_path)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(f"{stack.web_url}/console/pool")
    expect(page).to_have_url(re.compile(r"/console/login$"))


def test_block_and_unblock_numbers_from_the_blocked_numbers_page(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    page = signed_in(browser, stack)
    page.get_by_role("link", name="Blocked numbers").click()
    expect(page.get_by_role("heading", name="Blocked numbers", exact=True)).to_be_visible()
    for number, reason in ((SPAMMER, "reported for spam"), (PRANKSTER, "prank texts")):
        page.get_by_label("Number to block").fill(f"+{number}")
        page.get_by_label("Reason").fill(reason)
        page.get_by_role("button", name="Block", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text(f"+***{number[-4:]} is blocked")
    listed = page.locator("#blocked tbody tr")
    expect(listed).to_have_count(2)
    expect(listed.filter(has_text="+***7001")).to_contain_text("reported for spam")
    # the numbers were POSTed: neither the address nor the page holds them
    assert SPAMMER not in page.url and SPAMMER not in page.content()
    assert PRANKSTER not in page.content()
    # the same list as /v1's
    assert stack.api("GET", f"/v1/blocked-numbers/+{SPAMMER}").json()["reason"] == (
        "reported for spam"
    )

    page.get_by_role("button", name="Unblock +***7002 (prank texts)").click()
    expect(page.get_by_role("status")).to_contain_text("+***7002 is unblocked")
    expect(listed).to_have_count(1)
    expect(listed.first).to_contain_text("+***7001")
    assert stack.api("GET", f"/v1/blocked-numbers/+{PRANKSTER}").status_code == 404
    screenshot(page, "console-blocked", tmp_path)

    # unblocking by the number typed again
    page.get_by_label("Number to unblock").fill(f"+{SPAMMER}")
    page.get_by_role("button", name="Unblock", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("+***7001 is unblocked")
    expect(page.locator("main")).to_contain_text("No number is blocked.")

    page.get_by_role("link", name="Audit").click()
    rows = page.locator("table.list tbody tr")
    expect(rows.filter(has_text="unblock").filter(has_text="***7001")).to_have_count(1)
    expect(rows.filter(has_text="block").filter(has_text="***7002")).to_have_count(2)


def test_a_participant_who_texted_stop_shows_opted_out(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    assert stack.sandbox is not None
    sandbox = stack.sandbox.client
    created = stack.api("POST", "/v1/conversations", {
        "participants": [{"number": f"+{GUEST}", "display_name": "Gita"},
                         {"number": f"+{HOST}", "display_name": "Hal"}],
    }).json()
    active = stack.wait_for_status(created["id"], "active")
    guest_proxy, host_proxy = (p["proxy_number"].lstrip("+") for p in active["participants"])
    sandbox.wait_for_inbox(HOST, 1, timeout=20)  # the intro
    sandbox.send_from_handset(HOST, host_proxy, "STOP")
    sandbox.wait_for_inbox(HOST, 2, timeout=20)  # the confirmation: the opt-out is recorded
    sandbox.send_from_handset(GUEST, guest_proxy, "are you there?")

    page = signed_in(browser, stack)
    page.goto(f"{stack.web_url}/console/conversations/{created['id']}")
    host_row = page.locator("tr.participant").filter(has_text="+***4999")
    expect(host_row).to_contain_text("opted out since")
    expect(page.locator("tr.participant").filter(has_text="+***3888")).to_contain_text(
        "receives texts from it"
    )
    trail = page.locator("table.trail")
    expect(trail.locator("tr.inbound").filter(has_text="sender opted out")).to_contain_text(
        "not relayed: keyword"
    )
    # the guest's text after the STOP is held back: it shows once the worker has judged it
    expect_after_reloads(page, "table.trail", "not relayed: recipient_opted_out")
    assert GUEST not in page.content() and HOST not in page.content()
    screenshot(page, "console-opted-out", tmp_path)


def test_the_console_fits_a_phone_screen(browser: Browser, stack: Stack) -> None:
    page = signed_in(browser, stack, width=390, height=844)
    for path in ("/console", "/console/conversations", "/console/pool", "/console/blocked"):
        page.goto(f"{stack.web_url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
