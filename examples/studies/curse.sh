#!/usr/bin/env bash
# Curse of multilinguality (paper: at fixed capacity, adding languages beyond 7-15 hurts each
# one): one fixed-width model per nested language set (3 7 15 25 languages, around the same
# core, --core-langs); figure: the core languages' perplexity against the number of languages.

source "$(dirname "$0")/scale.sh"
exec xlmr-sweep "$DATA" --study curse --sweep-dir "$SWEEP" "${SCALE_ARGS[@]}" "$@"
