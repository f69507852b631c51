# make demo  -- set up .venv and run every stage that has landed (PRESET=tiny for a two-minute smoke run)
# make test  -- set up .venv and run the test suite
# make browser -- install Debian's chromium and chromium-driver for the web demo's browser test (apt-get, no download
#                 by the tests; sudo only when not root)
# TORCH_SPEC picks the torch build: the default takes PyPI's; CI sets torch==2.13.0 (a local CPU build).
PYTHON ?= python3
TORCH_SPEC ?= torch
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# JOBS: parallel pytest workers (pytest-xdist), auto = one per core; JOBS=0 runs the tests in this process (--pdb)
JOBS ?= auto
PRESET ?= cpu

.PHONY: setup demo test lint clean browser

setup: $(VENV)/.installed
	@command -v java >/dev/null 2>&1 || echo "warning: java is not on the PATH: caption scores will leave out METEOR and \
	use a pure-Python tokenizer instead of Stanford's PTB tokenizer (reports say so). Install a JRE to get both, \
	e.g. sudo apt-get install default-jre-headless (Debian/Ubuntu) or brew install openjdk (macOS)."

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $@

demo: setup
	$(PY) main.py demo --preset $(PRESET) $(ARGS)

test: setup
	$(PY) -m pytest -q -n $(JOBS) --dist loadscope $(ARGS)

browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	else \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
