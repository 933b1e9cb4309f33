#!/usr/bin/env bash
# α trade-off (paper: α = 0.3 balances high- and low-resource languages): one run per
# --multilang-sampling-alpha in 0.1 0.3 0.7 1.0; figure: perplexity of high- and low-resource
# languages (by their share p_i) against α. DATA: an xlmr-prepare output.

source "$(dirname "$0")/scale.sh"
exec xlmr-sweep "$DATA" --study alpha --sweep-dir "$SWEEP" "${SCALE_ARGS[@]}" "$@"
