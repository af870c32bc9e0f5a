# Two entry points, both idempotent: the first run builds .venv (about 2 minutes), later runs reuse it.
#   make demo   set up, then run the three-stage demo on the shipped tiny model
#   make test   set up, then run the whole test suite on the CPU, offline
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pcdms demo --out demo-output

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q
