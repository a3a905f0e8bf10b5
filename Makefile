# `make demo` sets up .venv and runs the main job; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extras the demo and the tests need. torch is installed first, pinned, so that nothing pulls a CUDA build.
EXTRAS ?= dev
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DATA   ?=
OUT    ?= runs/demo

.PHONY: install system-deps web extension demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps resemblyzer==0.1.4
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh "$(DATA)" "$(OUT)"

system-deps:
	@bash scripts/install-system-deps.sh

# The in-browser detector (onnxruntime-web from the npm registry, bundled locally) for `audios serve`'s
# "check on this device" and `audios export-web`, and the browser extension. Without npm their tests skip.
web:
	@if command -v npm >/dev/null; then npm --prefix web ci --no-audit --no-fund && npm --prefix web run build; \
	else echo "npm not found: the on-device page, export-web and browser-extension tests will be skipped"; fi

extension:
	@if command -v npm >/dev/null; then npm --prefix extension ci --no-audit --no-fund && \
	npm --prefix extension run build; fi

test: install system-deps web extension
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_data.py

clean:
	rm -rf runs out .pytest_cache
