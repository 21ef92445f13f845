# The same targets CI runs. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-netns lint bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

run: $(STAMP)  ## walk the Level 1 demo in this terminal
	$(BIN)/zcli run demos/Level_1_Menu/zUI.level1.yaml

test: $(STAMP)  ## every suite, with JUnit XML in test-reports/
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
