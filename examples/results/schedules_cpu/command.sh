#!/usr/bin/env bash
# The command that made this example (2026-12-03, 2 CPU cores, 12 runs of at most 20 CPU-minutes,
# two one-CPU SLURM jobs at a time: about 2 hours; a one-node test cluster as tests/slurm_cluster.py starts it).
# Data: the 25 languages of ../shared/corpus/mono, an 8k SentencePiece vocabulary, 10 held-out documents per language.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus/mono}
xlmr-prepare "$CORPUS" mono8k --vocab-size 8000 --valid-docs 10
# N is calibrated to 20 minutes of the dearest run (30% masking) on one thread: 4.26 updates/s, N = 5110
MINUTES=20 SEEDS="1 2" examples/studies/schedules.sh mono8k sweeps/schedules_cpu
xlmr-report sweeps/schedules_cpu/*,seed=*/ --out examples/results/schedules_cpu
