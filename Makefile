# Two commands for a newcomer: `make search` (the main job) and `make test`.
# Both create or update the virtual environment in $(VENV) first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.melnas-installed
# torch is pinned; on Linux, PyPI's wheel of that version is the CUDA build (several GB of
# nvidia packages). For a CPU-only machine: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install test test-fast test-slow search bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# tinysoundfont declares pyaudio, which it does not need to render offline.
	$(PY) -m pip install -q --no-deps tinysoundfont
	$(PY) -m pip install -q -e '.[dev,onnx,cluster]'
	touch $(STAMP)

install: $(STAMP)

test: test-fast test-slow

test-fast: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

search: $(STAMP)
	$(VENV)/bin/melnas-demo

bench: $(STAMP)
	$(PY) benchmarks/bench_prepare.py
	$(PY) benchmarks/bench_supernet.py

clean:
	rm -rf $(VENV) outputs multirun
