# The README's commands. Everything runs from the virtualenv in $(VENV).
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
# benchmarks/ is linted once it exists (git keeps no empty directories)
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: venv run test lint bench stress clean

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
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n auto --dist loadgroup

lint: venv
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	@if [ -f benchmarks/run_all.py ]; then \
		$(PY) benchmarks/run_all.py; \
	else \
		echo "benchmarks/run_all.py not found: nothing to run"; \
	fi

# Copy, restore and backup SIGKILLed ROUNDS times per mode on both dialects.
ROUNDS ?= 100
stress: venv
	$(PY) -m pip install -q -e '.[test]'
	$(PY) benchmarks/stress_kills.py --rounds $(ROUNDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f *.db *.db-wal *.db-shm
