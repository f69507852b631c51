# make demo  -- set up .venv and run every stage that has landed (PRESET=tiny for a one-minute smoke run)
# make test  -- set up .venv and run the test suite
# TORCH_SPEC picks the torch build: the default takes PyPI's; CI sets torch==2.13.0 (a local CPU build).
PYTHON ?= python3
TORCH_SPEC ?= torch
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PRESET ?= cpu

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $@

demo: setup
	$(PY) main.py demo --preset $(PRESET) $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
