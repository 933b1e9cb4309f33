# Shared by the study scripts: the training settings of each scale.
#   toy:  the tiny model on CPU, run here with --executor local (minutes per run)
#   base: the paper's base recipe (xlmr-train --preset base) on SLURM GPUs; MAX_UPDATE bounds
#         each run (an ablation budget of ours, not the paper's 1.5M), NODES x 8 GPUs per run
# usage: examples/studies/<study>.sh DATA SWEEP_DIR [toy|base] [more xlmr-sweep / fairseq-train options]
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,/^$/p' "$0"; exit 2; fi
DATA=$1 SWEEP=$2 SCALE=${3:-toy}
shift $(( $# >= 3 ? 3 : 2 ))
case "$SCALE" in
  toy) SCALE_ARGS=(--gpus-per-node 0 --task xlmr_mlm --criterion xlmr_masked_lm --arch xlmr_tiny
         --dropout 0.0 --attention-dropout 0.0 --tokens-per-sample 64 --batch-size 16 --batch-size-valid 64
         --optimizer fused_adamw --adam-betas '(0.9,0.98)' --adam-eps 1e-6 --weight-decay 0.01
         --lr 3e-3 --lr-scheduler polynomial_decay --warmup-updates 100
         --total-num-update "${MAX_UPDATE:-2000}" --max-update "${MAX_UPDATE:-2000}"
         --validate-interval-updates 1000 --no-save --log-format json --log-interval 50 --num-workers 0) ;;
  base) SCALE_ARGS=(--executor slurm --wait --preset base --nodes "${NODES:-2}" --gpus-per-node 8
         --total-num-update "${MAX_UPDATE:-100000}" --max-update "${MAX_UPDATE:-100000}"
         --warmup-updates "${WARMUP:-10000}" --validate-interval-updates 10000) ;;
  *) echo "scale must be toy or base, got $SCALE" >&2; exit 2 ;;
esac
