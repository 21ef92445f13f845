# The same targets CI runs. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run walk chromium test test-netns lint bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
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

test: $(STAMP) chromium  ## every suite, with JUnit XML in test-reports/
	$(BIN)/python -m zTestSuite --xml test-reports

test-netns: $(STAMP)  ## every suite in a network namespace with loopback down (root)
	unshare -n $(BIN)/python -m zTestSuite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	@for script in bench/*.py; do [ -e "$$script" ] && $(BIN)/python "$$script"; done; true

clean:
	rm -rf $(VENV) test-reports *.egg-info
