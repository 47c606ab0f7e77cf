# make train   set up, prepare Shakespeare if missing, train the tiny default model on CPU (a few minutes)
# make test    set up, then the test suite (slow end-to-end tests included; make test-fast skips them)
# make lint    ruff over the package, the tests, the benchmarks and the studies (pyproject.toml [tool.ruff])
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup train test test-fast lint prepare clean

setup: $(STAMP)

# torch first, pinned: 2.13.0 is the local CPU wheel (seconds); a looser pin would pull a multi-GB CUDA build
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

prepare: setup
	$(PY) -m gptlab.prepare data=shakespeare

train: prepare
	$(PY) -m gptlab.train $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

# test-fast spreads its tests over every core (pytest-xdist); make test runs in one process, in order, as timed
test-fast: setup
	$(PY) -m pytest -q -n auto -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check gptlab tests benchmarks experiments

clean:
	rm -rf $(VENV) runs outputs multirun
