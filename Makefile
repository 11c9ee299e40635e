# Every target builds or refreshes .venv from the project's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo run test lint pytest clean system-packages

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/broker demo --out demo-out

run: $(STAMP)
	$(BIN)/broker serve

lint: $(STAMP)
	$(BIN)/ruff check broker tests
	$(BIN)/ruff format --check broker tests
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

# Optional system packages: xmlsec1 (the independent XML-DSig verifier), the GOST backend and
# Chromium (the console's browser tests). Their tests skip without them on a laptop; CI
# (.ci/run) installs them and requires them.
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y xmlsec1 libengine-gost-openssl chromium; \
	else \
		echo "install xmlsec1, libengine-gost-openssl and chromium with your package manager (as root)"; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
