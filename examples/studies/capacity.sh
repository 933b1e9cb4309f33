#!/usr/bin/env bash
# Capacity (paper: widening 768 -> 960 -> 1152 as languages grow recovers quality): the curse
# study's language sets, the width growing a quarter of the base width per set; give both sweep
# directories to xlmr-report for one figure with both lines.

source "$(dirname "$0")/scale.sh"
exec xlmr-sweep "$DATA" --study capacity --sweep-dir "$SWEEP" "${SCALE_ARGS[@]}" "$@"
