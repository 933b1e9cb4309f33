"""Packed blocks (``--sample-break-mode packed``): pieces of several documents of one shard
in each block, each piece with its own ``<s>``, so that almost no slot is padding.

Whole lines leave slack: at 128 tokens, ``complete`` blocks of CC-100 text are about 24%
padding, and packing whole-line segments by best fit still leaves 18% (segments of
half a block or more do not pair). So a document is cut as fairseq's ``none`` mode cuts
a stream, but within the document: pieces of ``tokens_per_sample - 1`` tokens and a
shorter last one. A full piece fills a block with its ``<s>``; the last pieces are packed
by best-fit decreasing (ModernBERT's and mmBERT's packing), which leaves about 0.1% of
the slots empty (measured on ../shared/corpus/mono at 64, 128 and 512 tokens). The model
keeps each piece apart (positions restart, attention stays inside it: ``segment_ids``),
so a block computes what its pieces would alone.

On disk (``xlmr-prepare``, ``precompute_packed``): the pieces' token offsets in block order
(``layout.segments_path``) and each block's range of them (``layout.blocks_path``),
memory-mapped at load; computed from the index when not saved.
"""
import logging
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, FairseqDataset

from xlmr_plugin.data.array_sized import ArraySized
from xlmr_plugin.data.mapped_block_dataset import line_sizes
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.token_shards import load_blocks, read_tokens, write_blocks

logger = logging.getLogger(__name__)


def document_pieces(sizes: np.ndarray, max_tokens: int) -> np.ndarray:
    """(start, end) token offsets of the pieces of the documents of lines of ``sizes``: the
    lines between one-token document breaks (dropped, as ``complete_doc`` drops them) cut
    every ``max_tokens`` tokens."""
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes)
    text = sizes != 1  # a one-token item is a document break (an empty line's </s>)
    after_break = np.concatenate([[True], ~text[:-1]])
    before_break = np.concatenate([~text[1:], [True]])
    doc_start, doc_end = (ends - sizes)[text & after_break], ends[text & before_break]
    pieces = -(-(doc_end - doc_start) // max_tokens)
    k = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    start = np.repeat(doc_start, pieces) + k * max_tokens
    return np.stack([start, np.minimum(start + max_tokens, np.repeat(doc_end, pieces))], axis=1)


def best_fit_decreasing(sizes: np.ndarray, capacity: int) -> np.ndarray:
    """The bin of each item: items from the largest down (ties in order), each into the
    open bin it fills best, a new bin when none has room. Bins are numbered as opened.

    Bins are kept by free room, and a bit mask of the rooms some bin has finds the best
    one in a shift and a bit trick: about half a microsecond per item.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) and (sizes.min() < 1 or sizes.max() > capacity):
        raise ValueError(f"items of {sizes.min()} to {sizes.max()} do not fit bins of {capacity}")
    bin_of = np.empty(len(sizes), dtype=np.int64)
    by_room = [[] for _ in range(capacity + 1)]  # open bins by free room
    rooms = 0  # bit r set while some bin has room r
    opened = 0
    for item in np.argsort(-sizes, kind="stable").tolist():
        size = int(sizes[item])
        fitting = rooms >> size
        if fitting:
            room = size + (fitting & -fitting).bit_length() - 1  # the least room that fits
            b = by_room[room].pop()
            if not by_room[room]:
                rooms ^= 1 << room
        else:
            b, room, opened = opened, capacity, opened + 1
        bin_of[item] = b
        room -= size
        if room:
            if not by_room[room]:
                rooms |= 1 << room
            by_room[room].append(b)
    return bin_of


def pack(sizes: np.ndarray, tokens_per_sample: int) -> Tuple[np.ndarray, np.ndarray]:
    """(segments, blocks) of lines of ``sizes``: the document pieces' token offsets in block
    order (each block's in shard order), and each block's (first, end) rows of them. A
    piece takes its tokens and one slot for its <s>; a block holds ``tokens_per_sample`` slots."""
    pieces = document_pieces(sizes, tokens_per_sample - 1)
    bin_of = best_fit_decreasing(pieces[:, 1] - pieces[:, 0] + 1, tokens_per_sample)
    order = np.argsort(bin_of, kind="stable")
    ends = np.cumsum(np.bincount(bin_of, minlength=int(bin_of.max(initial=-1)) + 1))
    return pieces[order], np.stack([ends - np.diff(ends, prepend=0), ends], axis=1)


def precompute_packed(prefix: Path, tokens_per_sample: int) -> None:
    """Write a shard's packed blocks for ``tokens_per_sample`` beside it (the blocks last,
    so that a half-written pair is recomputed rather than read)."""
    segments, blocks = pack(line_sizes(prefix), tokens_per_sample)
    write_blocks(layout.segments_path(prefix, tokens_per_sample), segments)
    write_blocks(layout.blocks_path(prefix, layout.PACKED, tokens_per_sample), blocks)


class PackedBlockDataset(ArraySized, FairseqDataset):
    """The packed blocks of shard ``prefix``: each block's pieces, ``bos`` before each;
    ``segment_ids(i)`` numbers them 1..k token by token."""

    def __init__(self, prefix: Path, tokens_per_sample: int, bos: int):
        self.tokens, self.bos = read_tokens(prefix), bos
        saved = layout.block_files(prefix, layout.PACKED, tokens_per_sample)
        if all(path.exists() for path in saved):
            self.segments = load_blocks(saved[1], len(self.tokens))
            self.blocks = load_blocks(saved[0], len(self.segments), "segments")
        else:
            logger.info("%s: packing blocks (%d tokens): none saved by xlmr-prepare", prefix, tokens_per_sample)
            self.segments, self.blocks = pack(line_sizes(prefix), tokens_per_sample)
        slots = np.concatenate([[0], np.cumsum(self.segments[:, 1] - self.segments[:, 0] + 1)])
        self._sizes = (slots[self.blocks[:, 1]] - slots[self.blocks[:, 0]]).astype(np.int32)

    def _segments(self, index: int) -> np.ndarray:
        first, end = self.blocks[index]
        return self.segments[first:end]

    def __getitem__(self, index: int) -> torch.Tensor:
        parts = []
        for start, end in self._segments(index):
            parts += [[self.bos], self.tokens[start:end]]
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))

    def segment_ids(self, index: int) -> torch.Tensor:
        """1 for the first piece's <s> and tokens, 2 for the second's, ..."""
        segments = self._segments(index)
        lengths = torch.from_numpy((segments[:, 1] - segments[:, 0] + 1).astype(np.int64))
        return torch.repeat_interleave(torch.arange(1, len(segments) + 1), lengths)


class SegmentIdsDataset(BaseWrapperDataset):
    """The segment ids of a PackedBlockDataset's blocks, item by item, for ``net_input``."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset.segment_ids(index)
