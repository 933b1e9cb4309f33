# Two commands for a newcomer: `make demo` runs the whole job end to end on a small
# corpus, `make test` runs the test suite. Both set up .venv themselves, idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
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

# The demo recipe of xlmr_plugin/recipes.py (`xlmr-recipe demo`): a small post-norm XLM-R
# (2 layers, width 128) that trains in minutes on two CPU cores; DEMO_UPDATES replaces its
# 2000 updates, RECIPE=demo_paper trains the same model under the paper's static recipe.
# A rerun resumes from checkpoint_last.pt and stops at once when it is done.
DEMO_UPDATES ?=
RECIPE ?= demo
DEMO_TRAIN = $(shell $(BIN)/xlmr-recipe $(RECIPE) $(if $(DEMO_UPDATES),--updates $(DEMO_UPDATES)))
DEMO_PROBE = This option <mask> the output.\nDiese Option <mask> die Ausgabe.\nCette option <mask> la sortie.\n

demo: setup
	@if [ -z "$(CORPUS)" ]; then $(BIN)/python examples/demo_corpus.py $(DEMO)/corpus; fi
	$(BIN)/xlmr-prepare $(if $(CORPUS),$(CORPUS),$(DEMO)/corpus) $(DEMO)/data \
	  --vocab-size $(VOCAB) --workers $(WORKERS)
	$(BIN)/fairseq-train $(DEMO)/data $(or $(DEMO_TRAIN),$(error xlmr-recipe $(RECIPE) printed nothing)) \
	  --user-dir xlmr_plugin --save-dir $(DEMO)/checkpoints 2>&1 \
	  | tee $(DEMO)/train.log | grep -E "language_resampling|\| (train_inner|valid) \||done training"
	printf '$(DEMO_PROBE)' | $(BIN)/fairseq-interactive $(DEMO)/data --user-dir xlmr_plugin --task xlmr_mlm \
	  --path $(DEMO)/checkpoints/checkpoint_best.pt --bpe sentencepiece \
	  --sentencepiece-model $(DEMO)/data/spm.model --nbest 3 --cpu 2>/dev/null | grep -E "^(S|D|P)-"
	$(BIN)/python -m xlmr_plugin.probing.mask_fill_accuracy $(DEMO)/checkpoints/checkpoint_best.pt $(DEMO)/data \
	  --langs en,de,fr,ru,ja,es --max-lines 500 --json $(DEMO)/mask_accuracy.json 2>/dev/null
	$(BIN)/python -m xlmr.analysis.valid_curves $(DEMO)/train.log --out $(DEMO)/valid_curves.png

test: setup
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO)
