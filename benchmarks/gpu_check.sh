#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py says what it runs): one command on a lent GPU machine,
# from the repository root, with the carried wheels in $WHEELS (default .whl, made here by
# benchmarks/make_gpu_wheels.sh) and the results in $OUT:
#   bash benchmarks/gpu_check.sh              # GPU, under 9 minutes
#   bash benchmarks/gpu_check.sh --dry-run    # CPU, tiny shapes (tests/test_gpu_check.py runs it)
# The wheels install without a registry into a folder of their own; the repository itself is
# used in place (PYTHONPATH), so nothing of it needs installing there.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-benchmarks/results/gpu_check}
PYTHON=${PYTHON:-python3}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  SITE=${SITE:-/tmp/xlmr-gpu-check-site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || { echo "gpu_check: installing $WHEELS/*.whl failed" >&2; exit 3; }
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PYTHON" benchmarks/gpu_check.py --out "$OUT" "$@"
