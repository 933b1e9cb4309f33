"""Exponentially smoothed language sampling (XLM-R, Section 3.1; Lample & Conneau 2019).

q_i = p_i^a / sum_j p_j^a with p_i a language's share of the data: a < 1 flattens
the distribution so that low-resource languages are seen (and get vocabulary
pieces) more often than their share, a = 1 samples by size, a = 0 uniformly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from xlmr.preprocess.corpus import iter_split


def smoothed_probabilities(sizes: Sequence[float], alpha: float) -> np.ndarray:
    """q_i proportional to p_i ** alpha, where p_i = sizes_i / sum(sizes)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or len(sizes) == 0 or (sizes < 0).any() or sizes.sum() <= 0:
        raise ValueError(f"sizes must be non-negative with a positive sum, got {sizes.tolist()}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    p = sizes / sizes.sum()
    q = np.zeros_like(p)
    q[p > 0] = p[p > 0] ** alpha  # a language with no data is never drawn, even at alpha = 0
    return q / q.sum()


def allocate(total: int, probabilities: np.ndarray) -> np.ndarray:
    """Split `total` draws by `probabilities` into integers that sum to `total`
    (largest remainder), so each language's count is within one of total * q_i."""
    exact = np.asarray(probabilities, dtype=np.float64) * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def choose_lines(available: int, wanted: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which of `available` lines to take and how often, for `wanted` draws.

    Down-sampling draws without replacement; up-sampling takes every line
    `wanted // available` times and the remainder without replacement, so a small
    language is repeated as evenly as possible rather than by chance.
    Returns sorted unique line indices and their multiplicities.
    """
    if available <= 0 or wanted <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    repeats, rest = divmod(wanted, available)
    times = np.full(available, repeats, dtype=np.int64)
    times[rng.choice(available, size=rest, replace=False)] += 1
    idx = np.flatnonzero(times)
    return idx, times[idx]


def sample_train_lines(
    path: Path, valid_ids: np.ndarray, indices: np.ndarray, times: np.ndarray, skip_invalid: bool = False
) -> Iterator[str]:
    """Stream the chosen train-split lines of one language, each as often as drawn."""
    if len(indices) == 0:
        return
    k, line_no = 0, 0
    for is_valid, doc in iter_split(path, valid_ids, skip_invalid):
        if is_valid:
            continue
        for line in doc:
            if indices[k] == line_no:
                for _ in range(times[k]):
                    yield line
                k += 1
                if k == len(indices):
                    return
            line_no += 1
