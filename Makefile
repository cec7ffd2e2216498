# Every target sets up what it needs: `make test` on a fresh clone creates .venv and installs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: install train eval test test-all gpu-check lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

## the main job on the embedded toy benchmark; extra Hydra overrides via ARGS="trainer.max_steps=100 ..."
train: $(STAMP)
	$(PY) -m dastc.train $(ARGS)

## re-score a checkpoint: make eval ARGS="ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt"
eval: $(STAMP)
	$(PY) -m dastc.eval $(ARGS)

## the fast test suite (CPU, no downloads)
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal

## everything, slow tests included
test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal -m ""

## on a CUDA GPU: a few training steps of source-only, TPS and DA-STC (ResNet-101 ACCEL, paper sizes, fp32 and
## bf16) on generated data, one validation, one predict; prints step time, peak memory, finite losses (< 8 min).
## ARGS="--device cpu" is the CPU dry run; ARGS="--out gpu_check.json" also writes JSON (see --help)
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dastc tests scripts
	$(VENV)/bin/ruff format --check dastc tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff check --fix dastc tests scripts
	$(VENV)/bin/ruff format dastc tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
