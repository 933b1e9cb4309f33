#!/usr/bin/env bash
# Schedules at equal compute: the XLM-R recipe against annealed α, UniMax, annealed masking,
# warmup-stable-decay and all three anneals together (analysis/schedules_study.py), each run
# MINUTES (20) CPU-minutes on one thread of the demo model (xlmr-recipe demo_paper: 2 layers, width
# 128, 64-token blocks, 64 blocks per update), SEEDS (1 2) seeds, as SLURM jobs of one CPU
# each; every job then scores its checkpoint with xlmr-eval-ppl and xlmr-yardstick. Table and
# figure: SWEEP_DIR/report/. DATA: an xlmr-prepare output. Needs a running SLURM (SLURM_CONF).
# usage: examples/studies/schedules.sh DATA SWEEP_DIR [more xlmr-sweep / fairseq-train options]
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,/^$/p' "$0"; exit 2; fi
DATA=$1 SWEEP=$2
shift 2
MINUTES=${MINUTES:-20}
# the job's limit: the run's cap (5/4 of MINUTES), start-up and scoring
exec xlmr-sweep "$DATA" --study schedules --sweep-dir "$SWEEP" --preset demo_paper --gpus-per-node 0 \
  --minutes "$MINUTES" --calibration-updates 200 --seeds ${SEEDS:-1 2} --log-interval 100 \
  --executor slurm --wait --cpus-per-task 1 --mem-gb 3 --time $(( MINUTES * 5 / 4 + 15 )) "$@"
