# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the demo: registry, demo services, the main gateway and three BFFs; print a tour to try.
demo: $(STAMP)
	$(BIN)/forecourt demo

## Install everything the tests need (Python and Debian packages) and run the whole suite.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

## ruff and mypy, as CI would.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## Forecourt against nginx on this machine (needs nginx and wrk; installed when missing).
bench: $(STAMP)
	$(BIN)/python bench/run.py

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
