"""Launcher arithmetic on fairseq-train arguments: the update_freq that keeps a recipe's
total batch on any number of GPUs, and merging a recipe with the options a user adds.

The recipes themselves (`xlmr-train --preset NAME`) are `xlmr_plugin.recipes.RECIPES`.
"""
from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

PRECISION_FLAGS = {"--fp16", "--bf16", "--memory-efficient-fp16", "--memory-efficient-bf16", "--amp"}


def update_freq(total_batch: int, workers: int, batch_per_worker: int) -> int:
    """Gradient accumulation steps that keep `total_batch` sequences per update;
    rounded up (with a warning) when the product cannot be exact."""
    freq = max(1, math.ceil(total_batch / (workers * batch_per_worker)))
    if freq * workers * batch_per_worker != total_batch:
        logger.warning("batch of %d sequences per update, not %d: %d workers x %d x update-freq %d",
                       freq * workers * batch_per_worker, total_batch, workers, batch_per_worker, freq)
    return freq


def _groups(argv: list[str]) -> list[list[str]]:
    """Split an argument list into [flag, values...] groups (positionals alone first)."""
    groups: list[list[str]] = []
    for token in argv:
        if token.startswith("--") or not groups or not groups[-1][0].startswith("--"):
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def flag_value(argv: list[str], flag: str) -> str | None:
    """The last value given to `flag` in `argv`, or None."""
    values = [g[1] for g in _groups(argv) if g[0] == flag and len(g) > 1]
    return values[-1] if values else None


def merge(base: list[str], extra: list[str]) -> list[str]:
    """`base` then `extra`, where every flag of `extra` replaces the same flag of `base`
    and a precision flag of `extra` replaces all of `base`'s."""
    given = {g[0] for g in _groups(extra) if g[0].startswith("--")}
    dropped = given | (PRECISION_FLAGS if given & PRECISION_FLAGS else set())
    kept = [token for g in _groups(base) if g[0] not in dropped for token in g]
    return kept + list(extra)
