# One command surface for people and CI: install, run, test, lint, migrate, bench.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fault test-fault-full lint migrate bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp the first time (about 5 minutes on 2 cores);
	# pip caches the built wheel, so later installs take seconds.
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/llm-jobs run

test: $(STAMP)
	$(BIN)/python -m pytest

test-fault: $(STAMP)
	$(BIN)/python -m pytest -m fault -s

# The fault tests at full size (500 jobs with 10 worker kills, a 1,000-job storm).
test-fault-full: $(STAMP)
	LLMJOBS_FAULT_FULL=1 $(BIN)/python -m pytest -m fault -s

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy api workers orchestrator shared cli
	$(BIN)/lint-imports
	$(BIN)/python -c "from shared.migrate import upgrade, check; \
		import tempfile, os; p = os.path.join(tempfile.mkdtemp(), 'check.db'); \
		upgrade('sqlite:///' + p); check('sqlite:///' + p); print('alembic check: ok')"

migrate: $(STAMP)
	$(BIN)/llm-jobs migrate

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
