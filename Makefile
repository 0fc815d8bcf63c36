# Every user-facing target does all of its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean setup browser

setup: $(STAMP)

# The web page's browser tests drive Debian's Chromium (Playwright cannot download
# its own here). Installed once; later runs find it and skip this in no time.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
	@echo "accord is installed in $(BIN); to type 'accord' in your shell: . $(BIN)/activate"

demo: $(STAMP)
	$(BIN)/accord sim --web

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples conformance
	$(BIN)/ruff format --check src tests benchmarks examples conformance
	$(BIN)/mypy

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/presence.py
	$(BIN)/python benchmarks/rpc.py
	$(BIN)/python benchmarks/kv.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
