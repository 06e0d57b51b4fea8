# One entry point for people and CI. Every install goes through constraints.txt (torch==2.13.0 CPU).
PY ?= python3
PIP = $(PY) -m pip install -q -c constraints.txt

.PHONY: setup test lint demo golden

setup:
	$(PIP) -e ".[all]"

# Runs the whole test suite (+ the lfprop golden check when SPIKELFP_GOLDEN is set).
test: setup lint
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbmake notebooks
	@if [ -n "$$SPIKELFP_GOLDEN" ]; then $(PY) benchmarks/golden_lfprop.py --golden "$$SPIKELFP_GOLDEN"; fi

# The main job: train on the built-in event dataset with LFP, evaluate, export int8 NIR.
demo: setup
	$(PY) -m spikelfp demo --out runs/demo

lint:
	$(PY) -m ruff check spikelfp tests benchmarks
	$(PY) -m ruff format --check spikelfp tests benchmarks

golden:
	$(PY) benchmarks/golden_lfprop.py --golden "$${SPIKELFP_GOLDEN:-../shared/lfp_golden/lfprop-1.0.0-lif-golden.npz}"
