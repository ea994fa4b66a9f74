# One entry point for developers and CI. Targets stay short; the work lives in pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test test-long lint fmt fmt-check typecheck run clean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .

fmt-check: venv
	$(BIN)/ruff format --check .

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: venv
	$(BIN)/mypy domain projections backend miniprogram_stub

# Runs every check even when an earlier one fails, so one run shows everything; fails if any failed.
test: venv
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory fmt-check || status=1; \
	$(MAKE) --no-print-directory typecheck || status=1; \
	$(BIN)/pytest || status=1; \
	exit $$status

# The longer fault and fuzz runs (marker `long`), which `make test` leaves out.
test-long: venv
	$(BIN)/pytest -m long

run: venv
	$(BIN)/birthcert dev

.PHONY: bench
bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var/
