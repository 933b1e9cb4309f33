#!/usr/bin/env bash
# The command that made this example (2026-11-25, 2 shared CPU cores, 13 minutes for the 4 runs).
# Data: the 25 languages of ../shared/corpus/mono, the 8k SentencePiece vocabulary, 10 valid documents per language.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus/mono}
xlmr-prepare "$CORPUS" mono8k --vocab-size 8000 --valid-docs 10
OMP_NUM_THREADS=1 examples/studies/alpha.sh mono8k sweeps/alpha_cpu toy --tensorboard-logdir sweeps/alpha_cpu/tensorboard
xlmr-report sweeps/alpha_cpu/alpha=*/ --out examples/results/alpha_cpu   # also written to sweeps/alpha_cpu/report/
