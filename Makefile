# Two commands do everything: `make train` and `make test`.
# Each builds .venv from nothing (Python 3.11+ and make are all they need).

# The first interpreter that actually runs and is 3.11+ (version managers leave
# shims for versions that are not installed, so `command -v` is not enough).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: train test docs lint venv dev clean chromium

train: $(VENV)/.runtime
	$(BIN)/flaxfit train --recipe fast --out runs/default

# The notebook tests leave each notebook they ran, with its outputs, in build/notebooks;
# the docs build renders those (and fails if one is missing or stale), then the site is
# checked in the browser.
test: $(VENV)/.docs chromium
	$(BIN)/ruff check src tests benchmarks docs
	FLAXFIT_EXECUTED_NOTEBOOKS=$(CURDIR)/build/notebooks $(BIN)/python -m pytest -n 2 --durations=15
	$(BIN)/python docs/build.py --no-execute
	$(BIN)/python -m pytest docs

# The documentation site (English and Japanese) into docs/_build/html; executes the
# notebooks first when build/notebooks has no current copy of them (minutes on a CPU).
docs: $(VENV)/.docs
	$(BIN)/python docs/build.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

$(VENV)/.python:
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11+ found; install one or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"error: flaxfit needs Python 3.11+, but $(PYTHON) is {v.major}.{v.minor}; pass PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	@touch $@

# The lock files pin every package; the project itself is installed without
# resolving again, so a fresh clone gets exactly the tested versions.
$(VENV)/.runtime: $(VENV)/.python requirements/runtime.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements/runtime.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	@touch $@

$(VENV)/.docs: $(VENV)/.dev requirements/docs.txt
	$(BIN)/python -m pip install --quiet -r requirements/docs.txt
	@touch $@

# The digit pad's browser test drives Debian's chromium (Playwright's own browser
# download needs more network than CI has). Installed here when possible; when not,
# this says why and the test skips with the same reason; the build goes on.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "note: $(CHROMIUM) is missing and installing it needs root (apt-get install chromium); the browser test will be skipped" >&2; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: $(CHROMIUM) is missing and there is no apt-get to install it; the browser test will be skipped" >&2; \
	else \
		echo "installing chromium for the browser test: apt-get install chromium"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "note: apt-get install chromium failed (see above); the browser test will be skipped" >&2; \
	fi

clean:
	rm -rf $(VENV) build docs/_build src/*.egg-info .pytest_cache .ruff_cache
