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

# Commands and HTTP against same-run baselines (≈ 1.5 min), then the service at scale on a 10 k store
# (seeded into var/bench/10k the first time, reused afterwards; ≈ 5–9 min). bench/README.md says what each number means.
.PHONY: bench bench-seed bench-scale bench-startup bench-processes
bench: venv
	$(BIN)/python -m bench
	$(BIN)/python -m bench.scale --scale 10k --seconds 15 --ramp 5 --views status --jobs 2

# The big scales: a store seeded once into BENCH_STORE (default var/bench/SCALE; keep it outside any
# checkout, e.g. BENCH_STORE=/work/benchdata/sqlite-1M) and reused. SCALE=100k|1M, JOBS processes seed.
SCALE       ?= 100k
BENCH_STORE ?= var/bench/$(SCALE)
JOBS        ?= 2
bench-seed: venv
	nice -n 19 $(BIN)/python -O -m bench.seed --store $(BENCH_STORE) --scale $(SCALE) --top-up --jobs $(JOBS)

bench-scale: bench-seed
	$(BIN)/python -m bench.scale --store $(BENCH_STORE) --scale $(SCALE)

# Start-up time and memory against store size: BENCH_STORES="DIR DIR DIR" (e.g. the 10k, 100k and 1M stores).
bench-startup: venv
	$(BIN)/python -m bench.scale --startup-stores $(BENCH_STORES)

# 1, 2 and 4 `birthcert serve` processes on a PostgreSQL store (BENCH_PG_STORE, seeded with --postgres).
BENCH_PG_STORE ?= var/bench/pg-$(SCALE)
bench-processes: venv
	nice -n 19 $(BIN)/python -O -m bench.seed --store $(BENCH_PG_STORE) --scale $(SCALE) --top-up --jobs $(JOBS) \
		--postgres birthcert_bench_$(SCALE)
	$(BIN)/python -m bench.scale --store $(BENCH_PG_STORE) --scale $(SCALE) --processes 1,2,4 --users 500 --saturate 64

clean:
	rm -rf $(VENV) var/
