# Two entry points (see README): `make lab` opens the workshop, `make test` runs every test.
# Both create the project environment in .venv on first use; only Python 3.11+ and make are needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labkit-installed
# Extra options for JupyterLab, e.g. `make lab JUPYTER_ARGS="--port 9999 --no-browser"`.
JUPYTER_ARGS ?=
# Where attendees work: copies of notebooks/, ignored by git, so JupyterLab's autosave never dirties the checkout.
WORKSHOP ?= workshop
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
# JupyterLab refuses to start as root unless told; containers and CI machines often are root.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: help env lab test lint clean

help:
	@echo "make lab    set up .venv and open the workshop in JupyterLab"
	@echo "make test   set up .venv and run every test (lint, layers, unit, contract, notebooks)"
	@echo "make lint   ruff and the import-layer contracts only"
	@echo "make clean  remove .venv and caches"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"labkit needs Python 3.11 or newer, found " + sys.version.split()[0] + \
		" at " + sys.executable + ". Run make with PYTHON=python3.12 (or another 3.11+).")'
	@echo "Setting up $(VENV) (first run only; this downloads JupyterLab, Envoy and friends)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[lab,test]'
	@# labkit is installed editable, so nothing compiled its modules; with PYTHONDONTWRITEBYTECODE set, every
	@# emulator, zygote and kernel would compile them again at each start.
	$(BIN)/python -m compileall -q labkit
	@touch $@

env: $(STAMP)

# A notebook already in $(WORKSHOP) is the attendee's: it is never overwritten (delete it to start afresh).
lab: $(STAMP)
	@mkdir -p $(LAB_SETTINGS) "$(WORKSHOP)"
	@cp jupyter/overrides.json $(LAB_SETTINGS)/overrides.json
	@for file in notebooks/*; do [ -e "$(WORKSHOP)/$${file##*/}" ] || cp "$$file" "$(WORKSHOP)/"; done
	@echo "Opening the workshop. Point your browser at the http://127.0.0.1:… URL JupyterLab prints below."
	@echo "Your copies of the notebooks are in $(WORKSHOP)/ (git ignores them); to start a lab afresh, delete"
	@echo "its notebook there and run make lab again. Stop JupyterLab with Ctrl-C."
	$(BIN)/jupyter lab --notebook-dir="$(WORKSHOP)" --ServerApp.ip=127.0.0.1 $(ROOT_ARGS) $(JUPYTER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check labkit tests bench tools
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
