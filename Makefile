# The same targets CI runs. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run walk chromium services test test-netns lint bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,fast]'
	touch $(STAMP)

run: $(STAMP)  ## serve the Level 1 demo: open the zServer URL it prints; Ctrl-C stops it
	$(BIN)/zcli serve demos/Level_1_Menu

walk: $(STAMP)  ## the same Level 1 app in this terminal
	$(BIN)/zcli run demos/Level_1_Menu/zUI.level1.yaml

chromium:  ## Debian's Chromium for the browser tests (Playwright drives it, downloads none)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "The browser tests need Debian's chromium: sudo apt-get install chromium" >&2; \
	    exit 1; }

services:  ## Debian's redis-server and PostgreSQL for the database tests (run as processes)
	@{ command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq -o DPkg::Lock::Timeout=300 redis-server postgresql >/dev/null; } || \
	  { echo "The database tests need Debian's redis-server and postgresql:" \
	    "sudo apt-get install redis-server postgresql" >&2; exit 1; }

# zCLI's suites and the Level 1 demo's own, two at a time, each test bounded.
SUITES := --builtin --workspace demos/Level_1_Menu -j 2 --timeout 300

test: $(STAMP) chromium services  ## every suite; JUnit XML, report.html and report.json in test-reports/
	$(BIN)/python -m zTestSuite $(SUITES) --xml test-reports \
	  --html test-reports/report.html --json test-reports/report.json

test-netns: $(STAMP)  ## every suite in a network namespace with loopback down (root)
	unshare -n $(BIN)/python -m zTestSuite $(SUITES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## bench/*.py; the bridge bench's load generator and baselines need the bench extra
	$(BIN)/pip install --quiet -e '.[bench]'
	@for script in bench/*.py; do [ -e "$$script" ] && $(BIN)/python "$$script"; done; true

clean:
	rm -rf $(VENV) test-reports *.egg-info
