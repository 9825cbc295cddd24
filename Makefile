# SynthPACS. `make serve` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OHIF_STAMP := third_party/ohif/.version
# The CPU build of PyTorch; installed first so that nothing pulls a CUDA build.
TORCH := torch==2.13.0
# What ruff lints and formats.
LINTED := synthpacs generators tests benchmarks tools setup.py

.PHONY: serve test bench install system-tools ohif clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# dcmtk (findscu, movescu, storescp...), dicom3tools (dciodvfy) and Chromium for the tests.
system-tools:
	@if ! command -v dciodvfy >/dev/null || ! command -v findscu >/dev/null || ! command -v chromium >/dev/null; then \
		scripts/install-system-tools.sh; fi

# The prebuilt OHIF Viewer from the npm registry, served at /ohif/.
$(OHIF_STAMP): scripts/install-ohif.sh
	scripts/install-ohif.sh

ohif: $(OHIF_STAMP)

serve: $(STAMP)
	@$(MAKE) --no-print-directory ohif || echo "OHIF could not be fetched: /ohif/ stays off (DICOMweb and DIMSE are unaffected)"
	$(BIN)/synthpacs serve

test: $(STAMP) system-tools ohif
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) data .pytest_cache third_party
