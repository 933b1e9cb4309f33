"""Which lines of each language the SentencePiece sample takes. How many each language
gives is drawn by q_i ∝ p_i^α (``xlmr_plugin.data.language_resampling_dataset.
smoothed_probabilities``, the one implementation the trainer uses too) and split into
whole lines here."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from xlmr.preprocess.corpus import iter_split


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
