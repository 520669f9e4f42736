# Studioline: `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STUDIOLINE := $(VENV)/bin/studioline
DIR ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@command -v python3.11 >/dev/null && PYBIN=python3.11 || PYBIN=python3; \
	  test -x $(PY) || $$PYBIN -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch comes from the CPU wheel pip finds on this machine; it only exports and trains models.
	$(PY) -m pip install --quiet -e '.[dev,demo,train]'
	touch $@

setup: $(VENV)/.installed ## create .venv with the studioline command and everything the tests need

models: setup ## fetch, check and extract the model packs into .models
	$(STUDIOLINE) models fetch

proto: setup ## regenerate the Python stubs from proto/
	$(PY) -m grpc_tools.protoc -I proto --python_out=proto --pyi_out=proto --grpc_python_out=proto proto/studioline/v1/*.proto

proto-check: setup ## fail if the committed stubs differ from what `make proto` generates
	@tmp=$$(mktemp -d); \
	$(PY) -m grpc_tools.protoc -I proto --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp proto/studioline/v1/*.proto; \
	for f in $$tmp/studioline/v1/*.py*; do \
	  cmp -s $$f proto/studioline/v1/$$(basename $$f) || { echo "stale stub: proto/studioline/v1/$$(basename $$f); run make proto"; exit 1; }; \
	done; rm -rf $$tmp; echo "proto stubs up to date"

lint: setup ## static checks (ruff: unused and undefined names)
	$(VENV)/bin/ruff check shared services tests bench

test: models proto-check lint ## set up and run the whole test suite (unit, integration, end-to-end)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: models ## run the whole line on the demo photos (or DIR=photos/) and write out/index.html
	$(STUDIOLINE) demo $(DIR) --out out

clean: ## remove the virtualenv, the model store and outputs
	rm -rf $(VENV) .models out .pytest_cache

.PHONY: help setup models proto proto-check lint test demo clean
