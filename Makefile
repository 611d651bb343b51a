# Two entry points for a fresh machine (Python 3.11 and pip are all it needs):
#   make demo   install, then run the whole workflow on the embedded demo data
#   make test   install, then run the test suite (lint and format checks included)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/snakemake --cores all

test: install
	$(VENV)/bin/pytest
