# Two entry points matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config.toml
LINTED  := tokenkeep tests $(wildcard bench)
SOURCES := $(shell find tokenkeep migrations -type f \( -name '*.py' -o -name '*.sql' -o -name '*.html' -o -name '*.css' -o -name '*.json' \) 2>/dev/null)

.PHONY: run test lint typecheck pytest install clean

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

run: install
	@test -f $(CONFIG) || $(BIN)/tokenkeep --config $(CONFIG) init
	$(BIN)/tokenkeep --config $(CONFIG) serve

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install
	$(BIN)/mypy --strict tokenkeep

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
