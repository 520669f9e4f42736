# Studioline: `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STUDIOLINE := $(VENV)/bin/studioline
DIR ?=
# The labelled photos (never copied into the repo) and our fixed labels for them.
SHARED_DATA ?= ../shared/data
LABELS := tests/data/image_types.csv
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@command -v python3.11 >/dev/null && PYBIN=python3.11 || PYBIN=python3; \
	  test -x $(PY) || $$PYBIN -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch comes from the CPU wheel pip finds on this machine; it only exports and trains models.
	$(PY) -m pip install --quiet -e '.[dev,demo,train,eval,deploy,bench]'
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

train-classifier: models ## retrain the classifier head (seed 0) from tests/data/image_types.csv and ../shared/data
	@test -d $(SHARED_DATA) || { echo "train-classifier needs the labelled photos: $(SHARED_DATA) not found"; exit 1; }
	$(PY) -m studioline.services.classifier.train --csv $(LABELS) --data-root $(SHARED_DATA) \
	  --out services/classifier/head_v1.npz --seed 0

eval: models ## score the classifier, segmenter and matting on ../shared/data: bench/results/{classify*,quality}.json, out/quality/index.html
	@if [ ! -d $(SHARED_DATA) ]; then echo "eval skipped: the labelled photos ($(SHARED_DATA)) are not here"; exit 0; fi; \
	set -e; \
	echo "== validation split (images the head never saw: the quality figure) =="; \
	$(STUDIOLINE) eval classify --labels $(LABELS) --root $(SHARED_DATA) --split val \
	  --out bench/results/classify_val.json --plot bench/results/classify_val_confusion.png; \
	echo "== all labelled photos (includes the head's training images) =="; \
	$(STUDIOLINE) eval classify --labels $(LABELS) --root $(SHARED_DATA) --split all \
	  --out bench/results/classify.json --plot bench/results/classify_confusion.png; \
	echo "== cut-out quality: every set with ground truth (the worst images: out/quality/index.html) =="; \
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/quality.py --out bench/results/quality.json --report out/quality

# `make bench` sizes; shrink them for a quick look, e.g. make bench BENCH_LINE_N=100 BENCH_RSS_N=2000
BENCH_STEPS_N ?= 8
BENCH_REMBG_N ?= 24
BENCH_LINE_N ?= 500
BENCH_RSS_N ?= 10000
BENCH_RSS_MAX_S ?= 300

bench: models ## speed and memory: steps, the whole line, rembg side by side, RSS over time, GPU, HD cut-out and try-on, the chaos suite (bench/results/*.json, *.png, summary.json)
	@test -d $(SHARED_DATA) || { echo "bench needs the photos in $(SHARED_DATA)"; exit 1; }
	@$(PY) -c "import rembg" 2>/dev/null || { echo "bench needs rembg: $(PY) -m pip install -e '.[bench]'"; exit 1; }
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/steps.py --n $(BENCH_STEPS_N)
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/rembg_compare.py --n $(BENCH_REMBG_N)
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/line.py --n $(BENCH_LINE_N)
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/rss.py --n $(BENCH_RSS_N) --max-seconds $(BENCH_RSS_MAX_S)
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/gpu.py
	SHARED_DATA=$(SHARED_DATA) $(PY) -m bench.matting_hd
	SHARED_DATA=$(SHARED_DATA) $(PY) -m bench.compose_hd
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/memory_bombs.py
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/chaos.py $(CHAOS_ARGS)

# e.g. make chaos CHAOS_ARGS="--part poison --part kill --events 200"
CHAOS_ARGS ?=

chaos: models ## the chaos suite alone: kill -9, poison records, hostile images, memory limits, fuzzing, SIGTERM, health under load (bench/results/chaos.json, chaos.png)
	@test -d $(SHARED_DATA) || { echo "chaos needs the photos in $(SHARED_DATA)"; exit 1; }
	SHARED_DATA=$(SHARED_DATA) $(PY) bench/chaos.py $(CHAOS_ARGS)

demo: models ## run the whole line on the demo photos (or DIR=photos/) and write out/index.html
	$(STUDIOLINE) demo $(DIR) --out out

up: ## build the image and start the whole line with real Kafka and MinIO (docker compose; Grafana on :3000)
	docker compose -f docker/docker-compose.yml up --build

clean: ## remove the virtualenv, the model store and outputs
	rm -rf $(VENV) .models out .pytest_cache

.PHONY: help setup models proto proto-check lint test train-classifier eval bench chaos demo up clean
