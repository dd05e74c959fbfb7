# Two entry points matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config.toml
LINTED  := tokenkeep tests $(wildcard bench)
SOURCES := $(shell find tokenkeep migrations -type f \( -name '*.py' -o -name '*.sql' -o -name '*.html' -o -name '*.css' -o -name '*.json' \) 2>/dev/null)

OIDC    := tests/oidc
# apt-get as root, else through sudo; the browser test's tools come from Debian.
APT_GET := DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get

.PHONY: run test lint typecheck pytest install browser-tools node clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# A real (non-editable) install, as Docker and users get it: the tests run
# against the installed package, so a migration or template missing from the
# wheel fails the suite instead of a deployment.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(SOURCES)
	$(BIN)/pip install --quiet '.[dev]'
	touch $@

install: $(VENV)/.installed

# tests/test_browser.py drives Debian's Chromium through its ChromeDriver
# (downloading a browser at test time does not work here), against
# oidc-provider from the npm registry, installed from the committed lockfile.
/usr/bin/chromium /usr/bin/chromedriver &:
	$(APT_GET) update -q
	$(APT_GET) install -y -q chromium chromium-driver

node:
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ $(APT_GET) update -q && $(APT_GET) install -y -q nodejs npm; }

$(OIDC)/node_modules/.package-lock.json: $(OIDC)/package.json $(OIDC)/package-lock.json | node
	cd $(OIDC) && npm ci --no-audit --no-fund
	touch $@

browser-tools: /usr/bin/chromium /usr/bin/chromedriver $(OIDC)/node_modules/.package-lock.json

run: install
	@test -f $(CONFIG) || $(BIN)/tokenkeep --config $(CONFIG) init
	$(BIN)/tokenkeep --config $(CONFIG) serve

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install
	$(BIN)/mypy --strict tokenkeep

pytest: install browser-tools
	$(BIN)/pytest

test: lint typecheck pytest

# Benchmarks (docs/benchmarks.md); wrk comes from Debian. Not part of `make test`.
bench: install
	@command -v wrk >/dev/null || ($(APT_GET) update -qq && $(APT_GET) install -y -qq wrk)
	cd bench && ../$(BIN)/python run.py --out ../docs/benchmarks.md

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache $(OIDC)/node_modules
