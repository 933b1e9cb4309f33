# Two commands for a newcomer: `make demo` runs the whole job end to end on a small
# corpus, `make test` runs the test suite. Both set up .venv themselves, idempotently.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# The demo's data: empty builds a small corpus from Debian's translated manual pages.
CORPUS ?=
DEMO ?= demo
VOCAB ?= 8000
WORKERS ?= $(shell nproc)

.PHONY: demo test setup clean-demo

setup: $(VENV)/.installed

# torch first, from the CPU wheel, so that nothing pulls the CUDA build.
$(VENV)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[test,hf]"
	# fairseq-fixed pulls torchaudio, whose extension does not load against torch 2.13;
	# fairseq's text code never imports it, but transformers does whenever it is installed.
	$(BIN)/python -c "import torchaudio" 2>/dev/null || $(BIN)/python -m pip uninstall -q -y torchaudio
	touch $@

demo: setup
	@if [ -z "$(CORPUS)" ]; then $(BIN)/xlmr-demo-corpus $(DEMO)/corpus; fi
	$(BIN)/xlmr-prepare $(if $(CORPUS),$(CORPUS),$(DEMO)/corpus) $(DEMO)/data \
	  --vocab-size $(VOCAB) --workers $(WORKERS)

test: setup
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO)
