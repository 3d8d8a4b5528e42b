# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench native system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the demo: registry, demo services, the main gateway and three BFFs; print a tour to try.
demo: $(STAMP) native
	$(BIN)/forecourt demo

## Install everything the tests need (Python and Debian packages) and run the whole suite.
test: $(STAMP) system-deps native
	$(BIN)/python -m pytest -q -p no:cacheprovider

## ruff and mypy, as CI would.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

## Forecourt against nginx on this machine (needs nginx and wrk; installed when missing).
bench: $(STAMP) native
	$(BIN)/python bench/run.py

## Compile the per-request modules with mypyc when their sources changed (pure Python if it fails).
native: $(STAMP)
	$(BIN)/python scripts/build_native.py

system-deps:
	PYTHON=$(PYTHON) bash scripts/install-system-deps.sh

clean:
	-$(BIN)/python scripts/build_native.py --clean
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
