# `make demo` and `make test` work on a fresh machine: they create .venv and install
# what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench bench-quick faults clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "swarm needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# the distribution was named `swarm` before it became swarm-mesh: no second install
	-@$(PY) -m pip uninstall --quiet --yes swarm >/dev/null 2>&1
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/swarm demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff format --check swarm tests benchmarks
	$(VENV)/bin/ruff check swarm tests benchmarks
	$(VENV)/bin/mypy swarm
	$(VENV)/bin/actionlint -shellcheck $(VENV)/bin/shellcheck

format: $(STAMP)
	$(VENV)/bin/ruff format swarm tests benchmarks
	$(VENV)/bin/ruff check --fix swarm tests benchmarks

# the fault suite at full size (make test runs its quick form); writes docs/reliability.md
faults: $(STAMP)
	rm -f .faults.jsonl
	SWARM_FAULTS_FULL=1 SWARM_FAULTS_REPORT=.faults.jsonl $(PY) -m pytest -q -s tests/faults
	$(PY) -m benchmarks.faults_table .faults.jsonl

bench: $(STAMP)
	$(PY) -m benchmarks.run

# the same benchmarks, smaller (a few minutes): for a quick look, not for the figures
bench-quick: $(STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .swarm .pytest_cache .mypy_cache .ruff_cache .bench-peers
