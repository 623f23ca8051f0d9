# Airlock: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.airlock-installed

.PHONY: demo test lint prereqs bench fuzz clean venv dist

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Airlock needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m appliance.demo

# the tools the suite runs (nginx, avahi, chromium, strace...) first: as root
# they are installed with apt, otherwise one line names them; then the venv
test: prereqs
	@$(MAKE) --no-print-directory venv
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q

# ruff and mypy, configured in pyproject.toml; `make test` runs it first
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

prereqs:
	@sh tests/prereqs.sh

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

# the property-based fuzzers, long (CI runs them briefly within `make test`)
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/fuzz

# the offline installation folder and archive, dist/airlock-VERSION[.tar.gz]:
# wheels for CPython 3.11, units, udev rule, nginx snippet, install.sh
# (needs the network or a pip index; see docs/install.md)
dist: $(STAMP)
	$(BIN)/python packaging/build_dist.py --out dist

clean:
	rm -rf $(VENV) dist demo .cache .pytest_cache .mypy_cache .ruff_cache
