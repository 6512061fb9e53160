# Set-up and the two commands the README opens with. Works from a fresh clone on a CPU machine:
# the CPU build of torch is installed first (pinned), so nothing pulls a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U "pip>=25.1"
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e . --group dev
	touch $@

# The main job on the bundled sample data: the whole chain (ingest, train, predict, verify,
# plot) on 11 days of real DWD rain, in ./nowcast-demo (replaced on every run).
DEMO_DIR ?= nowcast-demo
demo: setup
	rm -rf $(DEMO_DIR)
	$(BIN)/nowcast demo --dir $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) nowcast-data .pytest_cache .ruff_cache .mypy_cache .hypothesis
