"""promtool, which `make test` installs (Debian's prometheus package): found, or the test skips
saying why."""

from __future__ import annotations

import shutil

import pytest


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed and `make test` could not install it "
                    "(apt-get install prometheus)")
    return found
