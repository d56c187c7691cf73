# Two entry points, both from a fresh Debian machine with only Python and gcc:
#   make demo   set everything up and run the main job on embedded defaults
#   make test   set everything up and run the whole test suite

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup demo test test-compiled test-twin lint bench fuzz clean

$(STAMP): pyproject.toml setup.py $(wildcard krill_crdt/_core/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	KRILL_REQUIRE_EXTENSIONS=1 $(PY) -m pip install --quiet -e '.[dev,all]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/krill demo

# The hot-path tests are parametrized over both implementations; the rest of the suite then
# runs again on the pure-Python twins so every layer is checked against both.
test: setup lint test-compiled test-twin

test-compiled: setup
	KRILL_REQUIRE_EXTENSIONS=1 $(PY) -m pytest -q

test-twin: setup
	KRILL_NO_EXTENSIONS=1 $(PY) -m pytest -q -m "not slow" --ignore=tests/core

lint: setup
	$(VENV)/bin/ruff check krill_crdt tests bench
	$(VENV)/bin/ruff format --check krill_crdt tests bench
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/krill bench

clean:
	rm -rf build dist *.egg-info krill_crdt/_core/*.c krill_crdt/_core/*.so .pytest_cache
