"""The paper's pretraining recipes as fairseq-train arguments (`xlmr-train --preset`).

Sources, value by value:
- XLM-R (Conneau et al. 2020, section 3 and appendix B): batch of 8192 sequences of
  512 tokens, 1.5M updates, masked LM with 15% masking, languages sampled with
  alpha = 0.3, pre-LN-free RoBERTa Base / Large shapes.
- RoBERTa (Liu et al. 2019, table 9), whose optimiser XLM-R reuses: Adam with
  beta = (0.9, 0.98), eps = 1e-6, weight decay 0.01, no gradient clipping (0.0),
  linear decay after warmup (fairseq's polynomial_decay, power 1), dropout 0.1;
  peak lr 6e-4 / warmup 24k updates (Base), 4e-4 / 30k (Large).
- Per-GPU batch: what fits a 32 GB V100 with fp16 at 512 tokens (fairseq's
  examples/roberta use 16 for Large); `--update-freq` then makes up the total.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TOTAL_BATCH = 8192  # sequences of 512 tokens per update (XLM-R)
PRECISION_FLAGS = {"--fp16", "--bf16", "--memory-efficient-fp16", "--memory-efficient-bf16", "--amp"}


@dataclass(frozen=True)
class Preset:
    arch: str
    lr: float
    warmup_updates: int
    batch_per_gpu: int
    total_updates: int = 1_500_000


PRESETS = {
    "base": Preset("xlmr_base", lr=6e-4, warmup_updates=24_000, batch_per_gpu=32),
    "large": Preset("xlmr_large", lr=4e-4, warmup_updates=30_000, batch_per_gpu=16),
}


def update_freq(total_batch: int, workers: int, batch_per_worker: int) -> int:
    """Gradient accumulation steps that keep `total_batch` sequences per update;
    rounded up (with a warning) when the product cannot be exact."""
    freq = max(1, math.ceil(total_batch / (workers * batch_per_worker)))
    if freq * workers * batch_per_worker != total_batch:
        logger.warning("batch of %d sequences per update, not %d: %d workers x %d x update-freq %d",
                       freq * workers * batch_per_worker, total_batch, workers, batch_per_worker, freq)
    return freq


def preset_arguments(preset: Preset, save_interval_updates: int) -> list[str]:
    """fairseq-train arguments of a recipe, without data, batch or distributed settings."""
    return [
        "--task", "xlmr_mlm", "--criterion", "xlmr_masked_lm", "--arch", preset.arch,
        "--tokens-per-sample", "512", "--sample-break-mode", "complete", "--mask-prob", "0.15",
        "--multilang-sampling-alpha", "0.3",
        "--optimizer", "fused_adamw", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06",
        "--weight-decay", "0.01", "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", str(preset.lr),
        "--warmup-updates", str(preset.warmup_updates), "--total-num-update", str(preset.total_updates),
        "--max-update", str(preset.total_updates), "--dropout", "0.1", "--attention-dropout", "0.1",
        "--save-interval-updates", str(save_interval_updates), "--keep-interval-updates", "2",
        "--no-epoch-checkpoints", "--validate-interval-updates", str(10 * save_interval_updates),
        "--log-format", "json", "--log-interval", "100",
    ]


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
