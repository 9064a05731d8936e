"""A headless Chromium for the browser tests: Debian's, driven by Playwright.

Never Playwright's own browser build (`playwright install` downloads it from a CDN): `make test`
installs Debian's chromium (devtools/install-debian-package), and these tests skip only where that
was impossible.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: Debian's chromium package could not be installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()
