# Tulifo Gig — `make help` lists the targets.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.DEFAULT_GOAL := help

.PHONY: help install run test lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/.installed ## create .venv and install the project with its test extras

run: install ## run the whole system on embedded defaults (API, worker, relay + local services)
	$(BIN)/tulifo dev

test: install ## run the test suite against real services
	$(BIN)/pytest

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Quix Streams peer runs from a venv of its own: it pins pydantic below what the project uses.
QUIX_VENV := .venv-quix
$(QUIX_VENV)/.installed: bench/peers/requirements-quix.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/pip install --quiet -r bench/peers/requirements-quix.txt
	touch $@

bench: install $(QUIX_VENV)/.installed ## the throughput and latency benchmark (bench/README.md)
	$(BIN)/python -m bench

clean: ## remove the venv and local state
	rm -rf $(VENV) $(QUIX_VENV) .tulifo .pytest_cache .mypy_cache .ruff_cache
