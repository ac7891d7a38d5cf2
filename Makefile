# The two commands of the README. Both set up on first use (scripts/setup.sh is idempotent).
SHELL := /bin/bash
PY := .venv/bin/python
export QGIS_PREFIX_PATH ?= /usr
export QT_QPA_PLATFORM ?= offscreen
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast plugin-zip bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m core.classify

test: setup
	$(PY) -m pytest

# the quick loop while working: no real QGIS, no demo end to end, no torchrun/pip (tests/conftest.py)
test-fast: setup
	$(PY) -m pytest -m "not slow"

plugin-zip: setup
	$(PY) scripts/build_plugin_zip.py

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:
	rm -rf .venv build dist .pytest_cache
