# The README's commands. Everything runs from the virtualenv in $(VENV).
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
# benchmarks/ is linted once it exists (git keeps no empty directories)
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: venv run test lint bench bench-scale stress clean

venv: $(PY)

$(PY):
	$(PYTHON) -m venv $(VENV)

run: venv
	$(PY) -m pip install -q -e .
	$(VENV)/bin/pfd-db init
	$(VENV)/bin/pfd-db status

test: venv
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n auto --dist loadgroup

lint: venv
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	@if [ -f benchmarks/run_all.py ]; then \
		$(PY) benchmarks/run_all.py; \
	else \
		echo "benchmarks/run_all.py not found: nothing to run"; \
	fi

# The request log at scale on PostgreSQL, partitioned and not (benchmarks/bench_scale.py):
# sizes in millions of rows; long (about half an hour), so not part of `make bench`.
# A try-out: make bench-scale SCALE_SIZES=0.1,0.5,1
SCALE_SIZES ?= 1,5,10
bench-scale: venv
	$(PY) -m pip install -q -e .
	$(PY) benchmarks/bench_scale.py --sizes $(SCALE_SIZES)

# Copy, restore and backup SIGKILLed ROUNDS times per mode on both dialects.
ROUNDS ?= 100
stress: venv
	$(PY) -m pip install -q -e '.[test]'
	$(PY) benchmarks/stress_kills.py --rounds $(ROUNDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f *.db *.db-wal *.db-shm
