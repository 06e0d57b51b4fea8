# One entry point for people and CI. Every install goes through constraints.txt (torch==2.13.0 CPU).
PY ?= python3
PIP = $(PY) -m pip install -q -c constraints.txt

.PHONY: setup test lint demo golden docs

setup:
	$(PIP) -e ".[all,nir-producers,xylo]"
	@# sinabs (NIR interop tests) pins nir<=1.0.4 and pulls samna: install it without its deps
	$(PY) -m pip install -q --no-deps "sinabs==3.1.3" "pbr==7.1.3"

# Runs the whole test suite and builds the docs (+ the lfprop golden check when SPIKELFP_GOLDEN is set).
test: setup lint docs
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbmake notebooks
	@if [ -n "$$SPIKELFP_GOLDEN" ]; then $(PY) benchmarks/golden_lfprop.py --golden "$$SPIKELFP_GOLDEN"; fi

# The main job: train on the built-in event dataset with LFP, evaluate, export int8 NIR.
demo: setup
	$(PY) -m spikelfp demo --out runs/demo

lint:
	$(PY) -m ruff check spikelfp tests benchmarks docs/*.py
	$(PY) -m ruff format --check spikelfp tests benchmarks docs/*.py

# The documentation site, docs/_build/html: every warning (a broken cross-reference, a docstring
# that does not render) is an error; docs/check_site.py then checks a few pages.
docs: setup
	@start=$$(date +%s); \
	$(PY) -m sphinx -E -q -b html -W --keep-going -j 1 docs docs/_build/html && \
	$(PY) docs/check_site.py docs/_build/html && \
	echo "docs: built docs/_build/html in $$(( $$(date +%s) - start )) s, 0 warnings"

golden:
	$(PY) benchmarks/golden_lfprop.py --golden "$${SPIKELFP_GOLDEN:-../shared/lfp_golden/lfprop-1.0.0-lif-golden.npz}"
