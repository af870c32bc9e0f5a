# Two entry points, both idempotent: the first run builds .venv (about 2 minutes), later runs reuse it.
#   make demo   set up, then run the three-stage demo on the shipped tiny model
#   make test   set up, then run the whole test suite on the CPU, offline; as root it first installs Debian's
#               chromium for the page's browser tests when it is missing (otherwise those tests skip, saying so)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,deepspeed]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pcdms demo --out demo-output

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q

# the page's browser tests drive Debian's chromium through Playwright (Playwright's own browser download does
# not work offline); installed only where this runs as root and it is missing
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	fi
