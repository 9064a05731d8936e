"""The operations console in a real browser over the whole stack: gunicorn, a Celery worker,
the sandbox, Redis. Sign in, find a conversation by a number, read its trail, close it, run
pool maintenance and drain a number; and the pages on a phone's screen."""

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


def test_the_console_fits_a_phone_screen(browser: Browser, stack: Stack) -> None:
    page = signed_in(browser, stack, width=390, height=844)
    for path in ("/console", "/console/conversations", "/console/pool"):
        page.goto(f"{stack.web_url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
