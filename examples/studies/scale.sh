# Shared by the study scripts: the training settings of each scale, recipes of
# xlmr_plugin/recipes.py (`xlmr-recipe toy`, `xlmr-recipe base` print them).
#   toy:  the tiny model on CPU, run here with --executor local (minutes per run); MAX_UPDATE
#         replaces the recipe's 2000 updates
#   base: the paper's base recipe on SLURM GPUs; MAX_UPDATE (100000) and WARMUP (10000) bound
#         each run (an ablation budget of ours, not the paper's 1.5M), NODES x 8 GPUs per run
# usage: examples/studies/<study>.sh DATA SWEEP_DIR [toy|base] [more xlmr-sweep / fairseq-train options]
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,/^$/p' "$0"; exit 2; fi
DATA=$1 SWEEP=$2 SCALE=${3:-toy}
shift $(( $# >= 3 ? 3 : 2 ))
case "$SCALE" in
  toy) SCALE_ARGS=(--preset toy --gpus-per-node 0
         ${MAX_UPDATE:+--total-num-update "$MAX_UPDATE" --max-update "$MAX_UPDATE"}) ;;
  base) SCALE_ARGS=(--executor slurm --wait --preset base --nodes "${NODES:-2}" --gpus-per-node 8
         --total-num-update "${MAX_UPDATE:-100000}" --max-update "${MAX_UPDATE:-100000}"
         --warmup-updates "${WARMUP:-10000}") ;;
  *) echo "scale must be toy or base, got $SCALE" >&2; exit 2 ;;
esac
