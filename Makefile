# Every target sets up what it needs: `make test` on a fresh clone creates .venv and installs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

LOCK := requirements/dev.lock

.PHONY: install lock train eval test test-all gpu-check lint format clean

LOCKED_PLATFORM := import platform, sys; sys.exit(not (sys.version_info[:2] == (3, 11) and \
	platform.system() == "Linux" and platform.machine() == "x86_64"))

## the exact set CI tested (requirements/dev.lock, made for Linux x86_64 and Python 3.11), then dastc itself,
## editable; elsewhere pip resolves pyproject.toml's ranges
install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	if $(PY) -c '$(LOCKED_PLATFORM)'; then \
		$(PY) -m pip install --quiet --no-deps --requirement $(LOCK) && \
		$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable . ; \
	else \
		echo "$(LOCK) is for Linux x86_64 with Python 3.11: installing from pyproject.toml's ranges instead"; \
		$(PY) -m pip install --quiet --editable '.[dev]' ; \
	fi
	touch $(STAMP)

## re-resolve requirements/dev.lock from pyproject.toml's ranges (after changing a dependency); uv resolves
## with requirements/overrides.txt and constraints.txt, then `make install` installs the new set
lock:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.5,<1'
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --quiet --no-header --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --override requirements/overrides.txt \
		--constraint requirements/constraints.txt --output-file $(LOCK)

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
