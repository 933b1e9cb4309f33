"""Encode and binarize one language: the unit of work of `xlmr-prepare`, a plain
function so that a local process pool and a SLURM array task run the same code.

The shards are byte-identical to `spm_encode | fairseq-preprocess --only-source
--srcdict dict.txt` on the same split, but made in one pass: SentencePiece
encodes whole batches to ids in C++, a lookup table maps them to fairseq ids, and
numpy writes each batch at once, where the two-step path prints pieces as text
and looks every piece up again in Python, one tensor per line.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import sentencepiece as spm
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import best_fitting_int_dtype

from xlmr.preprocess.corpus import decoded_lines, iter_split
from xlmr_plugin.storage.atomic import publish_directory
from xlmr_plugin.data.mapped_block_dataset import line_sizes, precompute_blocks
from xlmr_plugin.data.packed_block_dataset import precompute_packed
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.layout import DICT, LANGUAGE_MARKER, PARTIAL, SPLITS, SPM_MODEL, shard_of
from xlmr_plugin.storage.token_shards import (
    ShardError, check_shard, language_shards, read_summary, read_tokens, write_index,
)

logger = logging.getLogger(__name__)

# Whitespace other than ' ' inside a line: fairseq's tokenizer splits there, so such
# a line takes the exact (pieces as text) path rather than the id table.
_ODD_SPACE = re.compile(r"[^\S ]")


class Encoder:
    """Text lines -> fairseq ids, as `spm_encode` then `Dictionary.encode_line` would."""

    def __init__(self, spm_model: Path, dict_path: Path, threads: int = 1):
        self.sp = spm.SentencePieceProcessor(model_file=str(spm_model))
        self.dictionary = Dictionary.load(str(dict_path))
        self.threads = threads
        self.dtype = best_fitting_int_dtype(len(self.dictionary))
        table = [self.dictionary.index(self.sp.id_to_piece(i)) for i in range(self.sp.get_piece_size())]
        table[self.sp.unk_id()] = self.dictionary.unk()  # spm_encode prints an unknown span as its text
        self.table = np.asarray(table, dtype=np.int64)

    def _exact(self, line: str) -> list[int]:
        pieces = " ".join(self.sp.encode(line, out_type=str))
        return self.dictionary.encode_line(pieces, add_if_not_exist=False).tolist()

    def encode(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Flat token array and per-line sizes, each line ending in </s>."""
        ids = self.sp.encode(lines, num_threads=self.threads)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = self.table[np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))]
        sizes = lengths + 1
        ends = np.cumsum(sizes) - 1
        out = np.empty(int(sizes.sum()), dtype=self.dtype)
        body = np.ones(len(out), dtype=bool)
        body[ends] = False
        out[body] = flat
        out[ends] = self.dictionary.eos()
        odd = [i for i, line in enumerate(lines) if _ODD_SPACE.search(line)]
        if odd:
            out, sizes = self._patch(out, sizes, ends, odd, lines)
        return out, sizes.astype(np.int32)

    def _patch(self, out, sizes, ends, odd, lines):
        """Re-encode the lines in `odd` on the exact path and splice them in."""
        starts = ends - sizes + 1
        parts, new_sizes, prev = [], sizes.copy(), 0
        for i in odd:
            exact = np.asarray(self._exact(lines[i]), dtype=self.dtype)
            parts += [out[prev : starts[i]], exact]
            new_sizes[i] = len(exact)
            prev = ends[i] + 1
        parts.append(out[prev:])
        return np.concatenate(parts), new_sizes


class ShardWriter:
    """Streams batches into `<prefix>.bin` and writes fairseq's `<prefix>.idx`.

    With `shard_tokens`, the split becomes shards of whole documents (`layout.shard_of`):
    a shard ends at the first document break (an empty item) once it holds that many
    tokens. Where the cuts fall depends only on the stream of items, so one task writing
    a language and shards of it concatenated here (`merge_shards`) give the same shards."""

    def __init__(self, prefix: Path, dtype: type, shard_tokens: Optional[int] = None):
        self.prefix, self.dtype, self.shard_tokens = prefix, dtype, shard_tokens
        self.shards: list[int] = []  # tokens of each finished shard
        self.data = None
        self._sizes: list[np.ndarray] = []
        self._tokens = 0

    def add(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        while self.shard_tokens and len(sizes):
            ends = self._tokens + np.cumsum(sizes, dtype=np.int64)
            breaks = np.flatnonzero((sizes == 1) & (ends >= self.shard_tokens))
            if not len(breaks):
                break
            items = int(breaks[0]) + 1
            cut = int(np.sum(sizes[:items], dtype=np.int64))
            self._write(tokens[:cut], sizes[:items])
            self._finish_shard()
            tokens, sizes = tokens[cut:], sizes[items:]
        if len(sizes):
            self._write(tokens, sizes)

    def _write(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        if self.data is None:
            self.data = open(f"{shard_of(self.prefix, len(self.shards))}.bin", "wb")
        self.data.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes(order="C"))
        self._sizes.append(sizes)
        self._tokens += int(np.sum(sizes, dtype=np.int64))

    def _finish_shard(self) -> None:
        self.data.close()
        self.data = None
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, dtype=np.int32)
        write_index(Path(f"{shard_of(self.prefix, len(self.shards))}.idx"), self.dtype, sizes)
        self.shards.append(self._tokens)
        self._sizes, self._tokens = [], 0

    def close(self) -> int:
        """Finish the last shard (an empty one when nothing was written); returns all tokens."""
        if self.data is None and not self.shards:
            self._write(np.zeros(0, dtype=self.dtype), np.zeros(0, dtype=np.int32))
        if self.data is not None:
            self._finish_shard()
        return sum(self.shards)


@dataclass
class SplitStats:
    documents: int = 0
    lines: int = 0
    tokens: int = 0  # items' tokens as fairseq counts them, </s> included


@dataclass
class LanguageStats:
    lang: str
    fingerprint: dict
    splits: dict = field(default_factory=lambda: {s: SplitStats() for s in SPLITS})
    train_shards: list = field(default_factory=list)  # tokens of each training shard, in order

    @classmethod
    def load(cls, path: Path) -> "LanguageStats":
        raw = json.loads(path.read_text())
        raw["splits"] = {k: SplitStats(**v) for k, v in raw["splits"].items()}
        return cls(**raw)


# The (break mode, tokens per sample) of every recipe: their block boundaries are saved beside each shard.
BLOCK_MODES = sorted({(r.sample_break_mode, r.tokens_per_sample) for r in RECIPES.values() if r.tokens_per_sample})


def fingerprint(source: Path, vocabulary_sha256: str, valid_docs: int, seed: int, skip_invalid: bool,
                shard_tokens: int) -> dict:
    """What a language's shards depend on (`vocabulary_sha256`: `layout.vocabulary_sha256` of
    DEST): a finished language is redone only when it changes."""
    stat = source.stat()
    return {
        "source": str(source.resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "vocabulary_sha256": vocabulary_sha256,
        "valid_docs": valid_docs,
        "seed": seed,
        "skip_invalid": skip_invalid,
        "shard_tokens": shard_tokens,
        "block_modes": [list(mode) for mode in BLOCK_MODES],  # as json reads it back
    }


def _finished_in(directory: Path, expected: dict) -> Optional[LanguageStats]:
    """The marker's stats when it matches `expected` and the files it describes are whole."""
    marker = directory / LANGUAGE_MARKER
    if not marker.exists():
        return None
    stats = LanguageStats.load(marker)
    if stats.fingerprint != expected:
        return None
    try:
        language_shards(directory.parent, directory.name)
        if check_shard(directory / SPLITS[1]).tokens != stats.splits[SPLITS[1]].tokens:
            raise ShardError(f"{directory / SPLITS[1]}: not the tokens {marker} records")
    except ShardError as e:
        logger.warning("%s: marked finished but damaged (%s): redoing it", directory, e)
        return None
    return stats


def finished(dest: Path, lang: str, expected: dict) -> Optional[LanguageStats]:
    """The stats of an already finished language with the same fingerprint, else None."""
    return _finished_in(dest / lang, expected)


def _encode_documents(
    encoder: Encoder, documents: Iterable[tuple[bool, list[str]]], out: Path, stats: LanguageStats, batch_lines: int,
    shard_tokens: Optional[int],
) -> None:
    """Write `out/{train,valid}.{bin,idx}` from (is_valid, document) pairs, counting into `stats`;
    the train split in shards of `shard_tokens` (None: one file)."""
    writers = {s: ShardWriter(out / s, encoder.dtype, shard_tokens if s == SPLITS[0] else None) for s in SPLITS}
    pending: dict[str, list[str]] = {s: [] for s in SPLITS}

    def flush(split: str) -> None:
        if pending[split]:
            writers[split].add(*encoder.encode(pending[split]))
            pending[split] = []

    for is_valid, doc in documents:
        split = SPLITS[is_valid]
        stats.splits[split].documents += 1
        stats.splits[split].lines += len(doc)
        pending[split] += doc + [""]  # the empty item after a document is fairseq's document break
        if len(pending[split]) >= batch_lines:
            flush(split)
    for split in SPLITS:
        flush(split)
        stats.splits[split].tokens = writers[split].close()
    stats.train_shards = writers[SPLITS[0]].shards


def _fresh_directory(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _save_blocks(tmp: Path, shards: int) -> None:
    """The block boundaries of each training shard, for every recipe's block mode."""
    for index in range(shards):
        prefix = shard_of(tmp / SPLITS[0], index)
        for mode, tokens_per_sample in BLOCK_MODES:
            if mode == layout.PACKED:
                precompute_packed(prefix, tokens_per_sample)
            else:
                precompute_blocks(prefix, tokens_per_sample, mode)


def _publish(stats: LanguageStats, tmp: Path, out: Path) -> LanguageStats:
    """The marker last, then `tmp` moved to `out` at once, replacing an earlier run's output."""
    (tmp / LANGUAGE_MARKER).write_text(json.dumps(asdict(stats), indent=1))
    publish_directory(tmp, out, _earlier_output(out))
    return stats


def _earlier_output(out: Path) -> list[str]:
    """The files an earlier run's marker in `out` says it wrote there: its training shards
    and their blocks, which a run with other settings may not write again."""
    if not (out / LANGUAGE_MARKER).exists():
        return []
    earlier = json.loads((out / LANGUAGE_MARKER).read_text())
    modes = earlier["fingerprint"].get("block_modes", [])
    names = []
    for index in range(len(earlier.get("train_shards", []))):
        prefix = shard_of(Path(SPLITS[0]), index)
        names += [f"{prefix}.bin", f"{prefix}.idx"]
        names += [path.name for mode, tokens in modes for path in layout.block_files(prefix, mode, tokens)]
    return names


def _binarize(
    documents: Iterable[tuple[bool, list[str]]], stats: LanguageStats, dest: Path, tmp: Path, out: Path,
    threads: int, batch_lines: int, shard_tokens: Optional[int],
) -> LanguageStats:
    """Encode `documents` under `tmp` and publish them as `out`: a language's training shards
    with their blocks, or (`shard_tokens` None) one piece of a language, to merge."""
    encoder = Encoder(dest / SPM_MODEL, dest / DICT, threads)
    _encode_documents(encoder, documents, _fresh_directory(tmp), stats, batch_lines, shard_tokens)
    if shard_tokens is not None:
        _save_blocks(tmp, len(stats.train_shards))
    return _publish(stats, tmp, out)


def binarize_language(
    lang: str,
    source: Path,
    dest: Path,
    valid_ids: np.ndarray,
    fingerprint: dict,
    skip_invalid: bool = False,
    threads: int = 1,
    batch_lines: int = 8192,
) -> LanguageStats:
    """Write `dest/<lang>/{train,valid}.{bin,idx}` (the train split in shards `train`, `train1`, ...
    of `fingerprint["shard_tokens"]`) and `dest/<lang>/stats.json`.

    Everything is written under `dest/.partial/<lang>` and moved into place at
    the end, so an interrupted run leaves nothing fairseq or a rerun would take
    for finished."""
    return _binarize(iter_split(source, valid_ids, skip_invalid), LanguageStats(lang, fingerprint),
                     dest, dest / PARTIAL / lang, dest / lang, threads, batch_lines, fingerprint["shard_tokens"])


# A language too large for one task is cut into pieces of consecutive documents,
# binarized in parallel and merged: fairseq's files are their items' tokens back to
# back (.bin) and the items' sizes (.idx), so streaming the pieces' items through one
# ShardWriter gives byte for byte the training shards one task would have written.


@dataclass(frozen=True)
class Shard:
    """Documents [first, end) of a language file; document `first` starts at byte `offset`."""

    lang: str
    index: int
    first: int
    end: int
    offset: int


def plan_shards(lang: str, source: Path, documents: int, count: int) -> list[Shard]:
    """Cut `documents` into `count` runs of (nearly) equal length; one pass over the file
    finds where each run starts, so that every shard task seeks instead of re-reading."""
    count = max(1, min(count, documents))
    firsts = [documents * k // count for k in range(count)] + [documents]
    offsets, position, doc, in_doc = {0: 0}, 0, 0, False
    wanted = set(firsts[1:-1])
    for raw, text in decoded_lines(source):
        if text is not None and text.strip():
            if not in_doc:
                if doc in wanted:
                    offsets[doc] = position
                doc, in_doc = doc + 1, True
        elif text is not None:
            in_doc = False
        position += len(raw)
    return [Shard(lang, k, firsts[k], firsts[k + 1], offsets[firsts[k]]) for k in range(count)]


def shard_directory(dest: Path, shard: Shard) -> Path:
    return dest / PARTIAL / f"{shard.lang}.shards" / f"{shard.index:05d}"


def binarize_shard(
    shard: Shard,
    source: Path,
    dest: Path,
    valid_ids: np.ndarray,
    fingerprint: dict,
    skip_invalid: bool = False,
    threads: int = 1,
    batch_lines: int = 8192,
) -> LanguageStats:
    """Binarize one shard into `shard_directory(dest, shard)`; a shard already done with
    the same fingerprint is kept, so a resubmitted array redoes only what failed."""
    out = shard_directory(dest, shard)
    expected = {**fingerprint, "shard": asdict(shard)}
    done = _finished_in(out, expected)
    if done is not None:
        return done
    documents = iter_split(source, valid_ids, skip_invalid, shard.first, shard.end, shard.offset)
    return _binarize(documents, LanguageStats(shard.lang, expected), dest, out.with_name(out.name + ".tmp"), out,
                     threads, batch_lines, None)


def merge_shards(lang: str, dest: Path, shards: list[Shard], fingerprint: dict, chunk_items: int = 1 << 20) -> LanguageStats:
    """Stream the pieces' splits through one ShardWriter per split into `dest/<lang>`, as one
    task would have written it, `chunk_items` items at a time."""
    parts = [shard_directory(dest, s) for s in sorted(shards, key=lambda s: s.index)]
    tmp = _fresh_directory(dest / PARTIAL / lang)
    stats = LanguageStats(lang, fingerprint)
    counted = [LanguageStats.load(part / LANGUAGE_MARKER) for part in parts]
    for split in SPLITS:
        dtype = read_summary(parts[0] / split).dtype
        writer = ShardWriter(tmp / split, dtype, fingerprint["shard_tokens"] if split == SPLITS[0] else None)
        for part in parts:
            sizes = line_sizes(part / split)
            offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
            tokens = read_tokens(part / split)
            for first in range(0, len(sizes), chunk_items):
                end = min(first + chunk_items, len(sizes))
                writer.add(np.asarray(tokens[offsets[first]:offsets[end]]), sizes[first:end])
            del tokens
        total = stats.splits[split]
        total.tokens = writer.close()
        for part in counted:
            total.documents += part.splits[split].documents
            total.lines += part.splits[split].lines
        if split == SPLITS[0]:
            stats.train_shards = writer.shards
    _save_blocks(tmp, len(stats.train_shards))
    _publish(stats, tmp, dest / lang)
    shutil.rmtree(parts[0].parent)
    return stats
