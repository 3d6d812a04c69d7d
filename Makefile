# Two entry points for a fresh machine: `make demo` and `make test` (see README);
# `make docs` builds the documentation site into docs/_build/html (warnings are errors).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
GEOSLIDE_DATA_DIR ?= $(abspath ../shared/data)
export GEOSLIDE_DATA_DIR

.PHONY: demo test install docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/geoslide demo --out out/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not gpu" -p no:cacheprovider

# the site: MyST pages, API pages from the docstrings, the CLI reference from the parsers,
# results pages from docs/results/*.json; offline (no intersphinx), every warning an error
docs: $(VENV)/.installed
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
