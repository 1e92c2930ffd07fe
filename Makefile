# DFSS — run `make help` for the targets. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds this project is tested with (override for other machines).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
DEMO_DATA := data/synth_small
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install demo inspect synth results report weights test test-fast test-all lint format bench clean

help: ## Show this help
	@echo "DFSS — Distil FCOS for Security Scanning"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install DFSS with its dev tools

$(DEMO_DATA)/annotations/test.json: | $(STAMP)
	$(BIN)/dfss-synth --preset small --out $(DEMO_DATA) --workers 2

synth: $(DEMO_DATA)/annotations/test.json ## Generate the small synthetic X-ray set (if missing)

demo: synth ## The main job on the synthetic data: teacher -> FCOS -> DFSS -> evaluation table (~13 min on 2 CPU cores)
	$(BIN)/dfss-validate $(DEMO_DATA)/annotations/train.json --images $(DEMO_DATA)/images/train
	$(BIN)/dfss-demo --data $(DEMO_DATA)

PLAN ?= gpu
RESULTS ?= results/$(PLAN)
results: install ## The paper's experiments + report (PLAN=gpu: one GPU, ~8 min; PLAN=cpu: demo scale, ~2.5 h on 2 cores in float32)
	$(BIN)/dfss-results --plan $(PLAN) --out $(RESULTS) --report docs/results.md

report: install ## docs/results.md and its plots from the runs in $(RESULTS) (and the plots to W&B; PARTIAL=1: a plan under way)
	$(BIN)/dfss-report --results $(RESULTS) --out docs/results.md $(if $(PARTIAL),--partial)

weights: install ## Ship $(RESULTS)'s teacher and best DFSS student (float16, sha256, model card) into weights/
	$(BIN)/python -m dfss.results.ship --results $(RESULTS) --out weights

inspect: synth ## Load the synthetic set through the data module and draw augmented samples
	$(BIN)/dfss-inspect data=synth_small

# Tests run in TEST_WORKERS processes (pytest-xdist; each test file stays in one process, one torch
# thread each): 2 fills a 2-core machine. TEST_WORKERS=0 runs them in this process, one at a time.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: install ## Run the default test suite (set-up included)
	$(PYTEST)

test-fast: install ## Unit tests only, no training (about a minute on 2 cores): the tier to run while editing
	$(PYTEST) -m "not integration and not slow and not gpu"

test-all: install ## Run every test, slow ones included (GPU tests skip without a GPU)
	$(PYTEST) -m "slow or not slow"

lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Format the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Speed benchmarks on this CPU (steps, bf16, data loading, COCO eval, student candidates; ~10 min on 2 cores) into bench/results/
	PYTHON=$(abspath $(BIN))/python bash bench/cpu_run.sh

clean: ## Remove caches and run outputs (keeps .venv and data/)
	rm -rf .pytest_cache .ruff_cache logs outputs wandb
