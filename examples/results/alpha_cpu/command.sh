#!/usr/bin/env bash
# The command that made this example (2026-11-25, 2 shared CPU cores, 13 minutes for the 4 runs).
# Data: the 25 languages of ../shared/corpus/mono, the 8k SentencePiece vocabulary, 10 valid documents per language.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus/mono}
# the vocabulary was trained with 30 held-out documents per language, then the shards were re-split
# with 10 (faster validation) reusing that vocabulary:
xlmr-prepare "$CORPUS" mono8k_v30 --vocab-size 8000 --valid-docs 30
xlmr-prepare "$CORPUS" mono8k --spm-model mono8k_v30/spm.model --dict mono8k_v30/dict.txt --valid-docs 10
# the runs were started with this script's xlmr-sweep command written out (same arguments):
# xlmr-sweep mono8k --study alpha --sweep-dir sweeps/alpha_cpu --gpus-per-node 0 --task xlmr_mlm
#   --criterion xlmr_masked_lm --arch xlmr_tiny --dropout 0.0 --attention-dropout 0.0 --tokens-per-sample 64
#   --batch-size 16 --batch-size-valid 64 --optimizer fused_adamw --adam-betas '(0.9,0.98)' --adam-eps 1e-6
#   --weight-decay 0.01 --lr 3e-3 --lr-scheduler polynomial_decay --warmup-updates 100 --total-num-update 2000
#   --max-update 2000 --validate-interval-updates 1000 --no-save --log-format json --log-interval 50
#   --num-workers 0 --tensorboard-logdir sweeps/alpha_cpu/tensorboard
OMP_NUM_THREADS=1 examples/studies/alpha.sh mono8k sweeps/alpha_cpu toy --tensorboard-logdir sweeps/alpha_cpu/tensorboard
xlmr-report sweeps/alpha_cpu/alpha=*/ --out examples/results/alpha_cpu   # also written to sweeps/alpha_cpu/report/
