# activation-lab: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
CRON ?= 0 3 * * *
# A stamp per install flavour, so an edited pyproject.toml reinstalls and nothing else does.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help run test test-fast lint bench ui runs serve clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP) ## create .venv, install, run the main flow with params.yaml (more words: ARGS="--set train.epochs=3")
	$(BIN)/actlab run -p params.yaml $(ARGS)

test: $(DEV_STAMP) ## install the dev extra and run the whole test suite (each test bounded by pytest-timeout)
	$(BIN)/pytest $(ARGS)

test-fast: $(DEV_STAMP) ## the quick tier: no flow in a child process, no real data (under a minute)
	$(BIN)/pytest -m "not slow" -n auto $(ARGS)

lint: $(DEV_STAMP) ## ruff (lint, format) and import-linter (the layers in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: $(STAMP) ## speed per epoch vs Keras/TF1/NumPy, then whole runs and Dask scaling vs their targets (ARGS="--parts whole")
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_training.py $(ARGS)

ui: $(STAMP) ## browse the MLflow runs at http://127.0.0.1:5000
	$(BIN)/actlab ui

runs: $(STAMP) ## list the recent experiments (parent MLflow runs) as a table
	$(BIN)/actlab runs -p params.yaml $(ARGS)

serve: $(STAMP) ## serve params.yaml on a schedule, CRON="0 3 * * *" (needs PREFECT_API_URL: docs/operations.md)
	$(BIN)/actlab serve --cron "$(CRON)" -p params.yaml $(ARGS)

clean: ## remove runs, reports, processed data and leftover weights (keeps raw downloads and .venv)
	rm -rf mlruns mlflow.db reports data/processed data/weights
