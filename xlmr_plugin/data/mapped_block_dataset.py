"""The blocks of one shard, read straight from its memory-mapped tokens.

In every break mode a block is a run of consecutive tokens of the shard's ``.bin``
(lines longer than a block are first cut by ``split_plan``), so (start, end) offsets
describe it entirely. fairseq's TokenBlockDataset computes those offsets on every rank
from every line's size at every start and keeps three more numbers per block in memory;
here they are computed once (by ``xlmr-prepare``, ``block_slices``) and memory-mapped,
and a block's tokens are one slice of the ``.bin``. The tokens are those
TokenBlockDataset over SplitLongLinesDataset gives (tested).
"""
import logging
from pathlib import Path

import numpy as np
import torch
from fairseq.data import FairseqDataset
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.data.token_block_utils_fast import _get_slice_indices_fast

from xlmr_plugin.data.array_sized import ArraySized
from xlmr_plugin.data.split_long_lines_dataset import split_plan
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.token_shards import load_blocks, read_tokens, write_blocks

logger = logging.getLogger(__name__)


def block_slices(line_sizes: np.ndarray, tokens_per_sample: int, break_mode: str) -> np.ndarray:
    """(start, end) token offsets of the blocks of lines of ``line_sizes``: blocks hold
    ``tokens_per_sample - 1`` tokens at most (one place is for the ``<s>`` prepended later)."""
    block_size, break_mode = tokens_per_sample - 1, str(break_mode)  # the config's may be an enum
    sizes = np.asarray(line_sizes, dtype=np.int64)
    if break_mode != "none":
        sizes = split_plan(sizes, block_size)[2].astype(np.int64)
    if break_mode == "eos":  # one (cut) line per block
        ends = np.cumsum(sizes)
        return np.stack([ends - sizes, ends], axis=1)
    if len(sizes) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.asarray(_get_slice_indices_fast(sizes, break_mode, block_size, 1), dtype=np.int64)


def line_sizes(prefix: Path) -> np.ndarray:
    """A copy of a shard's item sizes (the index's own array dies with its memory map)."""
    index = MMapIndexedDataset.Index(f"{prefix}.idx")
    sizes = np.array(index.sizes)
    del index
    return sizes


def precompute_blocks(prefix: Path, tokens_per_sample: int, break_mode: str) -> Path:
    """Write a shard's block boundaries for (break mode, tokens per sample) beside it."""
    path = layout.blocks_path(prefix, break_mode, tokens_per_sample)
    write_blocks(path, block_slices(line_sizes(prefix), tokens_per_sample, break_mode))
    return path


class MappedBlockDataset(ArraySized, FairseqDataset):
    """The blocks of shard ``prefix``: boundaries memory-mapped when ``xlmr-prepare`` saved
    them for this (break mode, tokens per sample), computed from the index otherwise."""

    def __init__(self, prefix: Path, tokens_per_sample: int, break_mode: str):
        break_mode = str(break_mode)  # the config's may be an enum
        self.tokens = read_tokens(prefix)
        saved = layout.blocks_path(prefix, break_mode, tokens_per_sample)
        if saved.exists():
            self.slices = load_blocks(saved, len(self.tokens))
        else:
            logger.info("%s: computing blocks (%s, %d): none saved by xlmr-prepare", prefix, break_mode,
                        tokens_per_sample)
            self.slices = block_slices(line_sizes(prefix), tokens_per_sample, break_mode)
        self._sizes = np.diff(self.slices, axis=1)[:, 0].astype(np.int32)

    def __getitem__(self, index: int) -> torch.Tensor:
        start, end = self.slices[index]
        return torch.from_numpy(self.tokens[start:end].astype(np.int64))
