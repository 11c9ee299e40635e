# Every target builds or refreshes .venv from the project's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo run test lint pytest clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Until `broker demo` exists this runs the offline checks on the sample messages.
demo: $(STAMP)
	@echo "== make demo: the full exchange is not built yet; running the offline checks =="
	$(BIN)/broker xsd check
	$(BIN)/broker validate tests/data/valid-*.xml
	@echo "== each invalid sample must be refused with the code in its name =="
	@! $(BIN)/broker validate tests/data/invalid-*.xml

run: $(STAMP)
	$(BIN)/broker serve

lint: $(STAMP)
	$(BIN)/ruff check broker tests
	$(BIN)/ruff format --check broker tests
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
