# `make demo` and `make test` set everything up from a clean checkout (a .venv with Python 3.12).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# python3.12 on PATH if it runs (a pyenv shim may exist without the version selected), else a
# pyenv-installed 3.12, else the system's.
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 \
	/usr/local/bin/python3.12 /usr/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; \
	done)
EXTRAS ?= dev,dmc,onnx,offline,ros,compare
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTEST := $(BIN)/python -m pytest

.PHONY: venv demo test test-fast lint format bench clean toolchain

$(BIN)/python:
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install python3.12"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: $(STAMP)

# The ARM cross-compiler and the Cortex-M4 emulator (Debian packages; quiet when present).
toolchain:
	bash firmware_export/install_toolchain.sh

demo: $(STAMP) toolchain
	$(BIN)/python -m robotrl.demo

# Two phases: every test not marked serial in $(PARALLEL) processes (whole files per process),
# then the serial ones (ROS 2 real-time deadlines, the shared hover run) alone on the machine.
# $(1): a marker expression both phases add ("and not slow").
PARALLEL ?= 2
two_phases = $(PYTEST) -q -n $(PARALLEL) --dist loadfile -m "not serial $(1)" && \
	$(PYTEST) -q -m "serial $(1)"

test: $(STAMP) toolchain
	$(call two_phases,)

test-fast: $(STAMP) toolchain
	$(call two_phases,and not slow)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) toolchain
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache runs benchmarks/out
