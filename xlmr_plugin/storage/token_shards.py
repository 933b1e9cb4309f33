"""A language's training shards on disk: fairseq's mmap format, read without touching
a byte per line.

A language's train split is one or more shards of whole documents (``layout.train_shards``),
each a ``.bin`` of tokens back to back and an ``.idx`` of item sizes. ``xlmr-prepare``
also writes, next to each shard, its block boundaries for the recipes' block modes
(``layout.blocks_path``), so that a training rank memory-maps them instead of
recomputing them from every line's size.

fairseq's own index reader reads the whole ``.idx`` on open and its writer loops over
items in Python; at CC-100's billions of lines both matter, so the header is read
here directly and the index is written with numpy (the same bytes, tested).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from fairseq.data.indexed_dataset import MMapIndexedDataset, _code_to_dtype, _dtype_header_code

from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import atomic_path

_MAGIC = MMapIndexedDataset.Index._HDR_MAGIC
_HEADER = len(_MAGIC) + 8 + 1 + 8  # magic, version, dtype code, item count


class ShardError(ValueError):
    """A shard that is missing, truncated or unreadable: names the file and the fix."""


@dataclass(frozen=True)
class IndexSummary:
    """What a shard's ``.idx`` header and last entry say: the token dtype and counts."""

    dtype: type
    items: int
    tokens: int


def read_summary(prefix: Path) -> IndexSummary:
    """The dtype, items and tokens of a shard from a few bytes of its ``.idx``."""
    path = Path(prefix).with_suffix(".idx")
    try:
        with open(path, "rb") as f:
            header = f.read(_HEADER)
            if len(header) < _HEADER or not header.startswith(_MAGIC):
                raise ShardError(f"{path}: not a fairseq mmap index (rerun xlmr-prepare on this language)")
            code, items = header[len(_MAGIC) + 8], struct.unpack("<Q", header[-8:])[0]
            if code not in _code_to_dtype:
                raise ShardError(f"{path}: unknown dtype code {code} (rerun xlmr-prepare on this language)")
            dtype = _code_to_dtype[code]
            expected = _HEADER + items * (4 + 8)
            if path.stat().st_size != expected:
                raise ShardError(f"{path}: {path.stat().st_size} bytes where {items} items need {expected} "
                                 f"(truncated: rerun xlmr-prepare on this language)")
            if items == 0:
                return IndexSummary(dtype, 0, 0)
            f.seek(_HEADER + (items - 1) * 4)
            last_size = struct.unpack("<i", f.read(4))[0]
            f.seek(_HEADER + items * 4 + (items - 1) * 8)
            last_pointer = struct.unpack("<q", f.read(8))[0]
    except FileNotFoundError:
        raise ShardError(f"{path}: missing (rerun xlmr-prepare on this language)") from None
    return IndexSummary(dtype, items, last_pointer // np.dtype(dtype).itemsize + last_size)


def check_shard(prefix: Path) -> IndexSummary:
    """The shard's summary, once its ``.bin`` holds exactly the tokens its index describes."""
    summary = read_summary(prefix)
    data = Path(prefix).with_suffix(".bin")
    if not data.exists():
        raise ShardError(f"{data}: missing next to its index (rerun xlmr-prepare on this language)")
    expected = summary.tokens * np.dtype(summary.dtype).itemsize
    if data.stat().st_size != expected:
        raise ShardError(f"{data}: {data.stat().st_size} bytes where its index describes {expected} "
                         f"(truncated or from another run: rerun xlmr-prepare on this language)")
    return summary


def read_tokens(prefix: Path) -> np.ndarray:
    """A checked shard's tokens back to back, memory-mapped (an empty array for an empty
    shard, which cannot be mapped)."""
    summary = check_shard(prefix)
    if summary.tokens == 0:
        return np.zeros(0, dtype=summary.dtype)
    return np.memmap(Path(prefix).with_suffix(".bin"), dtype=summary.dtype, mode="r")


def write_index(path: Path, dtype: type, sizes: np.ndarray) -> None:
    """fairseq's ``.idx`` for items of ``sizes`` tokens, byte for byte as its writer makes it."""
    sizes = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= np.dtype(dtype).itemsize
    with open(path, "wb") as f:
        f.write(_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", _dtype_header_code(dtype)))
        f.write(struct.pack("<Q", len(sizes)))
        f.write(sizes.tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))


def write_blocks(path: Path, slices: np.ndarray) -> None:
    """Save block boundaries (N x 2 offsets: tokens of the shard, or rows of its packed
    segments) atomically, as int32 where they fit."""
    dtype = np.int32 if len(slices) == 0 or int(slices[-1, 1]) < 2**31 else np.int64
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(slices, dtype=dtype))


def load_blocks(path: Path, length: int, unit: str = "tokens") -> np.ndarray:
    """Memory-map saved block boundaries, checked against the ``length`` of what they index
    (the shard's tokens, or its packed segments)."""
    try:
        slices = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ShardError(f"{path}: unreadable block boundaries ({e}): delete it to recompute") from None
    if slices.ndim != 2 or slices.shape[1] != 2 or (len(slices) and int(slices[-1, 1]) > length):
        raise ShardError(f"{path}: block boundaries that do not fit a shard of {length} {unit}: delete it to recompute")
    return slices


def language_shards(data: Path, lang: str, vocabulary: Optional[str] = None) -> List[Tuple[Path, int]]:
    """(prefix, tokens) of each training shard of ``lang`` in ``data``, checked without reading them.

    ``xlmr-prepare``'s marker (``<lang>/stats.json``) records every shard's tokens, so one
    listing of the folder finds a missing shard and one ``stat`` per shard a truncated
    ``.bin``: a rank's start-up does not grow with the number of shards it will not read.
    Without a marker (data made elsewhere) each shard's index header is read instead.
    With ``vocabulary`` (a ``layout.vocabulary_sha256``), shards binarized with another
    vocabulary are refused.
    """
    lang_dir = Path(data) / lang
    marker = lang_dir / layout.LANGUAGE_MARKER
    record = json.loads(marker.read_text()) if marker.exists() else {}
    made_with = record.get("fingerprint", {}).get("vocabulary_sha256")
    if vocabulary and made_with and made_with != vocabulary:
        raise ShardError(f"{lang_dir}: binarized with another vocabulary than the one training reads "
                         f"({marker} records {made_with[:12]}, the dictionary is {vocabulary[:12]}): "
                         "rerun xlmr-prepare with this vocabulary, or train with the DEST's own")
    recorded = record.get("train_shards")
    if recorded is None:
        return [(prefix, check_shard(prefix).tokens) for prefix in layout.train_shards(data, lang)]
    names = set(os.listdir(lang_dir))
    shards = []
    for index, tokens in enumerate(recorded):
        prefix = layout.train_shard(data, lang, index)
        for suffix in (".idx", ".bin"):
            if prefix.name + suffix not in names:
                raise ShardError(f"{prefix}{suffix}: missing ({marker} records {len(recorded)} shards): "
                                 f"rerun xlmr-prepare on this language")
        if index == 0:
            itemsize = np.dtype(read_summary(prefix).dtype).itemsize
        size = os.stat(f"{prefix}.bin").st_size
        if size != tokens * itemsize:
            raise ShardError(f"{prefix}.bin: {size} bytes where {marker} records {tokens * itemsize} "
                             f"(truncated or from another run: rerun xlmr-prepare on this language)")
        shards.append((prefix, tokens))
    return shards
