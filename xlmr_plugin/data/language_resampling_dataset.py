"""α-smoothed language sampling (Conneau et al. 2019, §3.1; Lample & Conneau 2019).

q_i = p_i^α / Σ_j p_j^α with p_i a language's share of the data: α < 1 flattens the
distribution so that low-resource languages are seen (and get vocabulary pieces) more
often than their share, α = 1 samples by size, α = 0 uniformly. ``xlmr-prepare``'s
vocabulary sample and the trainer's epochs both draw by ``smoothed_probabilities``.
"""
import logging
from typing import List, Sequence

import numpy as np
from fairseq.data import BaseWrapperDataset, FairseqDataset, ResamplingDataset, plasma_utils

logger = logging.getLogger(__name__)


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


def blocks_per_language(q: np.ndarray, blocks: Sequence[int]) -> List[int]:
    """Blocks each language contributes to an epoch of the same total size as the data.

    Every language keeps at least one block so that a tiny language is never silent.
    """
    total = int(np.sum(blocks))
    return [max(1, int(round(qi * total))) for qi in q]


class LanguageResamplingDataset(ResamplingDataset):
    """Draws ``size`` blocks of one language, anew for every (seed, language, epoch).

    Unlike fairseq's ResamplingDataset, which samples up-sampled languages with
    replacement (an α=1 epoch then misses ~37% of a language's blocks), this takes
    every block floor(size / len) times and the remainder without replacement. The
    language index enters the RNG so that equally sized languages are not drawn in
    lockstep.
    """

    def __init__(self, dataset: FairseqDataset, size: int, seed: int, stream: int, epoch: int = 1):
        BaseWrapperDataset.__init__(self, dataset)
        self.weights = None
        self.replace = size > len(dataset)
        self.size_ratio = size / len(dataset)
        self.actual_size = size
        self.batch_by_size = True
        self.seed = seed
        self.stream = stream
        self._cur_epoch = None
        self._cur_indices = None
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        BaseWrapperDataset.set_epoch(self, epoch)
        if epoch == self._cur_epoch:
            return
        self._cur_epoch = epoch
        rng = np.random.RandomState([self.seed % (2**32), self.stream, epoch])
        n = len(self.dataset)
        copies, rest = divmod(self.actual_size, n)
        indices = np.concatenate(
            [np.tile(np.arange(n), copies), rng.choice(n, rest, replace=False)]
        ).astype(np.int32 if n < 2**31 else np.int64)
        self._cur_indices = plasma_utils.PlasmaArray(indices)


def log_sampling_table(langs: Sequence[str], tokens: Sequence[int], q: np.ndarray,
                       blocks: Sequence[int], drawn: Sequence[int], alpha: float, shards: Sequence[str]) -> None:
    """One line per language, so a run's log records how it weighted each language in each
    epoch: p and q from all of a language's tokens, blocks from the epoch's shard of it."""
    p = np.asarray(tokens, dtype=np.float64) / float(np.sum(tokens))
    logger.info("language sampling, alpha=%g (p: share of tokens, q: sampling probability)", alpha)
    logger.info("%-8s %12s %8s %8s %8s %10s %10s %8s", "lang", "tokens", "p", "q", "shard", "blocks", "drawn", "ratio")
    for i, lang in enumerate(langs):
        logger.info(
            "%-8s %12d %8.4f %8.4f %8s %10d %10d %8.3f",
            lang, tokens[i], p[i], q[i], shards[i], blocks[i], drawn[i], drawn[i] / blocks[i],
        )
    logger.info("%-8s %12d %8.4f %8.4f %8s %10d %10d", "total", sum(tokens), 1.0, 1.0, "", sum(blocks), sum(drawn))
