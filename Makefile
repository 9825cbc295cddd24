# SynthPACS. `make serve` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := .system-tools-installed
# The CPU build of PyTorch; installed first so that nothing pulls a CUDA build.
TORCH := torch==2.13.0

.PHONY: serve test test-slow bench install system-tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# dcmtk (findscu, movescu, storescp...) and dicom3tools (dciodvfy) for the tests.
system-tools:
	@if ! command -v dciodvfy >/dev/null || ! command -v findscu >/dev/null; then \
		scripts/install-system-tools.sh; fi

serve: $(STAMP)
	$(BIN)/synthpacs serve

test: $(STAMP) system-tools
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP) system-tools
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) data .pytest_cache
