"""α-smoothed language sampling (Conneau et al. 2019, §3.1; Lample & Conneau 2019).

q_i = p_i^α / Σ_j p_j^α with p_i a language's share of the data: α < 1 flattens the
distribution so that low-resource languages are seen (and get vocabulary pieces) more
often than their share, α = 1 samples by size, α = 0 uniformly. ``xlmr-prepare``'s
vocabulary sample and the trainer's epochs both draw by ``smoothed_probabilities``.

UniMax (Chung et al. 2023, Algorithm 1) instead spreads a run's token budget uniformly
over the languages and caps each at N epochs of its own data: ``unimax_allocation``.
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


def unimax_allocation(tokens: Sequence[float], budget: float, max_epochs: float) -> np.ndarray:
    """Tokens of the budget each language gets: languages from the smallest up take an equal
    share of what is left, but at most ``max_epochs`` times their own tokens, so that what a
    small language cannot use goes to the larger ones and no language is repeated more than
    ``max_epochs`` times. Sums to the budget unless every language is capped."""
    tokens = np.asarray(tokens, dtype=np.float64)
    if tokens.ndim != 1 or len(tokens) == 0 or (tokens < 0).any():
        raise ValueError(f"tokens must be non-negative, got {tokens.tolist()}")
    if budget <= 0 or max_epochs <= 0:
        raise ValueError(f"budget and max_epochs must be > 0, got {budget}, {max_epochs}")
    allocation = np.zeros_like(tokens)
    left = float(budget)
    order = np.argsort(tokens, kind="stable")
    for k, i in enumerate(order):
        allocation[i] = min(left / (len(order) - k), max_epochs * tokens[i])
        left -= allocation[i]
    return allocation


def blocks_per_language(q: np.ndarray, blocks: Sequence[int], total: int = 0) -> List[int]:
    """Blocks each language contributes to an epoch of ``total`` blocks (0: as many as the data has).

    Every language with q > 0 keeps at least one block so that a tiny language is never
    silent; q = 0 (a language that has not joined yet) draws none.
    """
    total = total or int(np.sum(blocks))
    return [max(1, int(round(qi * total))) if qi > 0 else 0 for qi in q]


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
                       blocks: Sequence[int], drawn: Sequence[int], mode: str, shards: Sequence[str]) -> None:
    """One line per language, so a run's log records how it weighted each language
    whenever that changes: p and q from all of a language's tokens, blocks from the epoch's
    shard of it; ``mode`` names the rule, e.g. "alpha=0.3" or "unimax=2 epochs ..."."""
    p = np.asarray(tokens, dtype=np.float64) / float(np.sum(tokens))
    logger.info("language sampling, %s (p: share of tokens, q: sampling probability)", mode)
    logger.info("%-8s %12s %8s %8s %8s %10s %10s %8s", "lang", "tokens", "p", "q", "shard", "blocks", "drawn", "ratio")
    for i, lang in enumerate(langs):
        logger.info(
            "%-8s %12d %8.4f %8.4f %8s %10d %10d %8.3f",
            lang, tokens[i], p[i], q[i], shards[i], blocks[i], drawn[i], drawn[i] / max(1, blocks[i]),
        )
    logger.info("%-8s %12d %8.4f %8.4f %8s %10d %10d", "total", sum(tokens), 1.0, 1.0, "", sum(blocks), sum(drawn))
