"""The handsets page in a real browser over the whole stack: sandbox, web, a Celery worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from devtools.stack import API_TOKEN, Stack, StackConfig

pytestmark = pytest.mark.e2e

RIDER = "447400123456"
DRIVER = "447400654321"
HOSTILE = '<script>window.pwned = 1</script><b onmouseover="window.pwned = 2">bold?</b>'
ARRIVES = 30_000  # ms: an upper bound for a text's trip through the proxy, not a measurement
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "handsets.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), pool_targets="GB=2",
        handsets=True, phones=(RIDER, DRIVER),
    )
    with Stack(config) as running:
        running.provision_pool(expected=2)
        yield running


def open_page(browser: Browser, stack: Stack, width: int = 1280, height: int = 900) -> Page:
    assert stack.sandbox is not None and stack.sandbox.handsets_url is not None
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{stack.sandbox.handsets_url}/handsets")
    return page


def test_two_phones_start_a_conversation_and_text_through_the_proxy(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    # The driver's screen is opened first and never reloaded: what reaches it arrives live.
    driver_screen = open_page(browser, stack)
    driver_timeline = driver_screen.locator(f"#phone-{DRIVER} .timeline")
    expect(driver_timeline).to_contain_text("No texts yet")

    rider_screen = open_page(browser, stack)
    rider = rider_screen.locator(f"#phone-{RIDER}")
    rider.get_by_text("New conversation").click()
    rider.get_by_label("With").fill(f"+{DRIVER}")
    rider.get_by_label("This phone's name").fill("Rita the rider")
    rider.get_by_label("Their name").fill("Dev the driver")
    rider.get_by_role("button", name="Start").click()
    expect(rider.locator(".notice")).to_contain_text("the intro texts will arrive")

    # each phone's intro comes from its own proxy number, naming the other side
    intro = rider.locator(".timeline li.in").filter(has_text="Dev the driver")
    expect(intro).to_be_visible(timeout=ARRIVES)
    expect(driver_timeline.locator("li.in").filter(has_text="Rita the rider")).to_be_visible(
        timeout=ARRIVES
    )
    rider_proxy = rider.locator(".timeline li.in .number").first.inner_text()
    driver_proxy = driver_timeline.locator("li.in .number").first.inner_text()
    assert rider_proxy != f"+{DRIVER}" and driver_proxy != f"+{RIDER}"

    rider.get_by_label("To").fill(rider_proxy)
    rider.get_by_label("Text").fill("Hi, I'm by the north entrance")
    rider.get_by_role("button", name="Send").click()
    # the rider's own screen shows what it sent; the driver's receives it from its proxy number
    expect(
        rider_screen.locator(f"#phone-{RIDER} .timeline li.out").filter(has_text="north entrance")
    ).to_be_visible()
    arrived = driver_timeline.locator("li.in").filter(has_text="north entrance")
    expect(arrived).to_contain_text(f"from {driver_proxy}", timeout=ARRIVES)
    expect(arrived).not_to_contain_text(RIDER)

    # a hostile body crosses the proxy and shows as text; no script of it runs
    rider = rider_screen.locator(f"#phone-{RIDER}")
    rider.get_by_label("To").fill(rider_proxy)
    rider.get_by_label("Text").fill(HOSTILE)
    rider.get_by_role("button", name="Send").click()
    hostile = driver_timeline.locator("li.in .text").filter(has_text="window.pwned")
    expect(hostile).to_have_text(HOSTILE, timeout=ARRIVES)
    hostile.hover()
    assert driver_screen.evaluate("window.pwned") is None
    assert driver_screen.locator(f"#phone-{DRIVER} .timeline b").count() == 0

    # the driver answers from the screen that updated live, tapping the text to reply to it
    driver = driver_screen.locator(f"#phone-{DRIVER}")
    arrived.click()
    expect(driver.get_by_label("To")).to_have_value(driver_proxy)
    driver.get_by_label("Text").fill("On my way, 2 minutes")
    driver.get_by_role("button", name="Send").click()
    answer = rider_screen.locator(f"#phone-{RIDER} .timeline li.in").filter(has_text="On my way")
    expect(answer).to_contain_text(f"from {rider_proxy}", timeout=ARRIVES)

    # the API's token stays in the sandbox process
    assert API_TOKEN not in rider_screen.content()
    shot = tmp_path / "handsets.png"
    rider_screen.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SMSPROXY_UPDATE_DOCS_IMAGES"):  # regenerates docs/images/handsets.png
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)


def test_the_page_fits_a_phone_screen(browser: Browser, stack: Stack) -> None:
    page = open_page(browser, stack, width=390, height=844)
    expect(page.locator(f"#phone-{RIDER}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator(f"#phone-{RIDER}").bounding_box()
    assert box is not None and box["width"] <= 390


def test_a_phone_added_on_the_page_can_text_and_appears_on_other_screens(
    browser: Browser, stack: Stack
) -> None:
    watcher = open_page(browser, stack)
    page = open_page(browser, stack)
    page.get_by_label("Add a phone").fill("+447400111111")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#phone-447400111111")).to_be_visible()
    # the other screen gets the new phone without a reload
    expect(watcher.locator("#phone-447400111111")).to_be_visible(timeout=ARRIVES)
