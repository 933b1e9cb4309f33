"""Split token sequences longer than a block into balanced pieces before blocking.

fairseq's TokenBlockDataset keeps a line longer than the block size whole in the
``complete``, ``complete_doc`` and ``eos`` break modes, so the block exceeds
``--tokens-per-sample``: training silently drops it and validation refuses it. CC-100
paragraphs are often longer than 512 pieces, so that would throw away a large share of
the text. Splitting such lines first keeps every token.
"""
import logging
from typing import Tuple

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, FairseqDataset

from xlmr_plugin.data.array_sized import ArraySized

logger = logging.getLogger(__name__)


def split_plan(sizes: np.ndarray, max_len: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, start, size) of each piece when items of ``sizes`` longer than ``max_len``
    become ceil(len / max_len) pieces of near-equal size (never 1 token for max_len >= 4,
    so the one-token document separators of ``complete_doc`` stay unambiguous)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    pieces = np.maximum(1, -(-sizes // max_len))  # ceil, at least one piece
    item = np.repeat(np.arange(len(sizes)), pieces)
    first_piece = np.cumsum(pieces) - pieces
    k = np.arange(len(item)) - np.repeat(first_piece, pieces)
    n, length = pieces[item], sizes[item]
    start = k * length // n
    # three numbers per piece for hundreds of millions of lines: keep them compact
    return (item.astype(np.int32 if len(sizes) < 2**31 else np.int64), start.astype(np.int32),
            ((k + 1) * length // n - start).astype(np.int32))


class SplitLongLinesDataset(ArraySized, BaseWrapperDataset):
    """Items of ``dataset`` longer than ``max_len`` become pieces, as ``split_plan`` cuts them."""

    def __init__(self, dataset: FairseqDataset, max_len: int):
        super().__init__(dataset)
        self._item, self._start, self._sizes = split_plan(dataset.sizes, max_len)
        long = np.bincount(self._item, minlength=len(dataset.sizes)) > 1
        logger.info("split %d lines longer than %d tokens into %d pieces",
                    int(long.sum()), max_len, int(long[self._item].sum()))

    @classmethod
    def wrap_if_needed(cls, dataset: FairseqDataset, max_len: int) -> FairseqDataset:
        """Wrap only when some item is too long: the index arrays cost memory per line."""
        if len(dataset) == 0 or int(np.max(dataset.sizes)) <= max_len:
            return dataset
        return cls(dataset, max_len)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = int(self._start[index])
        return self.dataset[int(self._item[index])][start : start + int(self._sizes[index])]

    @property
    def supports_prefetch(self) -> bool:
        return False
