#!/usr/bin/env bash
# Vocabulary size at constant parameters (paper: 32k -> 256k pieces gives +2.8% XNLI): one
# xlmr-prepare per size (--prepare-options for its settings), the width chosen so the parameter
# count stays within 2%; figure: bits per character against vocabulary size.
# DATA: the raw corpus (CC-100 style), not a prepared directory.

source "$(dirname "$0")/scale.sh"
exec xlmr-sweep "$DATA" --study vocab --sweep-dir "$SWEEP" "${SCALE_ARGS[@]}" "$@"
