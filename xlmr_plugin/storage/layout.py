"""The files of a prepared data folder (DEST) and of a model release directory.

Every command that reads or writes these folders takes the names from here, so that a
renamed file is renamed once. A DEST, as ``xlmr-prepare`` writes it::

    DEST/spm.model  dict.txt  vocab.json  stats.tsv
    DEST/<lang>/train.{bin,idx}  valid.{bin,idx}  stats.json   (stats.json last: "done")
    DEST/<lang>/train.blocks-<mode>-<tokens>.npy (train.segments-packed-<tokens>.npy)
    DEST/.partial/...                                        (work in progress)

A release directory (the official XLM-R downloads, ``xlmr-import-hf``'s output)::

    DIR/model.pt  dict.txt  sentencepiece.bpe.model

``dict.txt`` lists the SentencePiece pieces in id order without the first three
(``<unk> <s> </s>``); fairseq prepends ``<s> <pad> </s> <unk>`` and the plugin appends
``<mask>``, so fairseq id = SentencePiece id + 1 as in XLM-R.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import sentencepiece as spm

from xlmr_plugin.storage.atomic import atomic_path

DICT = "dict.txt"
SPM_MODEL = "spm.model"  # xlmr-prepare's SentencePiece model
RELEASE_SPM_MODEL = "sentencepiece.bpe.model"  # the release's (and Hugging Face's) name
# the order a folder holding both names is read in: a data folder's own model first, and a
# model folder's (release, Hugging Face export) own first, so each reads what it was made with
SPM_NAMES = (SPM_MODEL, RELEASE_SPM_MODEL)
RELEASE_SPM_NAMES = (RELEASE_SPM_MODEL, SPM_MODEL)
VOCAB_RECORD = "vocab.json"  # how the vocabulary was made, to reuse it on a rerun
STATS = "stats.tsv"  # one row per language: sizes, p_i, q_i
LANGUAGE_MARKER = "stats.json"  # written last into DEST/<lang>: its presence means finished
PARTIAL = ".partial"  # work in progress under DEST, moved into place when complete
RELEASE_MODEL = "model.pt"
SPLITS = ("train", "valid")
# the break mode whose blocks pack several segments (pieces of documents), each with its own <s>
PACKED = "packed"
# <s> <pad> </s> <unk> before dict.txt's pieces, <mask> after them
SPECIAL_SYMBOLS_BEFORE, SPECIAL_SYMBOLS_AFTER = 4, 1


def split_prefix(data: Path, lang: str, split: str) -> Path:
    """fairseq's path prefix of one binarized split (``.bin`` and ``.idx`` beside it)."""
    return Path(data) / lang / split


def shard_of(prefix: Path, index: int) -> Path:
    """Prefix of part ``index`` of a split: ``train`` for the first, ``train<k>`` for the
    others (fairseq's names for the parts of a split)."""
    return Path(prefix) if index == 0 else Path(prefix).with_name(f"{Path(prefix).name}{index}")


def train_shard(data: Path, lang: str, index: int) -> Path:
    """Prefix of a language's training shard ``index``."""
    return shard_of(split_prefix(data, lang, SPLITS[0]), index)


def train_shards(data: Path, lang: str) -> List[Path]:
    """A language's training shards in order, while present."""
    found: List[Path] = []
    while Path(f"{train_shard(data, lang, len(found))}.idx").exists():
        found.append(train_shard(data, lang, len(found)))
    return found


def blocks_path(prefix: Path, break_mode: str, tokens_per_sample: int) -> Path:
    """Where a shard's block boundaries for (break mode, tokens per sample) are kept: token
    offsets of each block, or for ``PACKED`` the range of ``segments_path``'s rows it holds."""
    return Path(f"{prefix}.blocks-{break_mode}-{tokens_per_sample}.npy")


def segments_path(prefix: Path, tokens_per_sample: int) -> Path:
    """Where a shard's packed segments (token offsets, in block order) are kept."""
    return Path(f"{prefix}.segments-{PACKED}-{tokens_per_sample}.npy")


def block_files(prefix: Path, break_mode: str, tokens_per_sample: int) -> List[Path]:
    """Every file a shard's blocks for (break mode, tokens per sample) are saved in."""
    blocks = blocks_path(prefix, break_mode, tokens_per_sample)
    return [blocks, segments_path(prefix, tokens_per_sample)] if str(break_mode) == PACKED else [blocks]


def languages(data: Path, split: str = "train") -> List[str]:
    """The language folders of ``data`` that hold a binarized ``split``, sorted."""
    data = Path(data)
    return sorted(p.name for p in data.iterdir() if Path(f"{split_prefix(data, p.name, split)}.idx").is_file())


def find_spm(*dirs: Path, names: Sequence[str] = SPM_NAMES) -> Path:
    """The first SentencePiece model of ``names`` found in ``dirs``: each folder in turn,
    each name in turn within it."""
    for directory in dirs:
        for name in names:
            if (Path(directory) / name).is_file():
                return Path(directory) / name
    raise FileNotFoundError(f"no {' or '.join(names)} in {', '.join(map(str, dirs))}")


def dictionary_dir(model_dir: Path, task_cfg: Any) -> Path:
    """Where a checkpoint's dict.txt is: ``model_dir`` if it holds one (release layout), else
    the first folder of the ``data`` its task config ``task_cfg`` was trained on (fairseq
    separates several data folders with ``:``)."""
    model_dir = Path(model_dir)
    if (model_dir / DICT).is_file():
        return model_dir
    trained_on = getattr(task_cfg, "data", None)  # a DictConfig or an argparse Namespace
    data = Path(str(trained_on).split(":")[0]) if trained_on else None
    if data is None or not (data / DICT).is_file():
        raise FileNotFoundError(f"no {DICT} in {model_dir} nor in the checkpoint's data folder {data}: pass data_dir")
    return data


def vocabulary_sha256(data: Path) -> str:
    """The digest of ``data``'s spm.model and dict.txt, as xlmr-prepare records it in
    vocab.json and in every language's marker: data binarized with one vocabulary and
    read with another gives wrong ids silently."""
    return pair_sha256(Path(data) / SPM_MODEL, Path(data) / DICT)


def pair_sha256(spm_model: Path, dictionary: Path) -> str:
    """``vocabulary_sha256`` of a (SentencePiece model, dict.txt) pair wherever it lies."""
    digest = hashlib.sha256()
    for path in (spm_model, dictionary):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def dictionary_size(data: Path) -> int:
    """Embedding rows a model of ``data``'s vocabulary has: specials, dict.txt's pieces, <mask>."""
    with open(Path(data) / DICT, encoding="utf-8") as f:
        pieces = sum(1 for line in f if line.strip())
    return SPECIAL_SYMBOLS_BEFORE + pieces + SPECIAL_SYMBOLS_AFTER


def write_dictionary(model: Path, counts: np.ndarray, out: Path) -> int:
    """Write dict.txt: every piece of SentencePiece ``model`` from id 3 on, in id order, with
    its count in ``counts`` (indexed by SentencePiece id). Returns the number of entries."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    special = {sp.unk_id(), sp.bos_id(), sp.eos_id()}
    if special != {0, 1, 2}:
        raise ValueError(f"{model}: expected <unk>, <s>, </s> at ids 0-2 as in XLM-R, got {sorted(special)}")
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in range(3, sp.get_piece_size()):
            f.write(f"{sp.id_to_piece(i)} {int(counts[i])}\n")
    return sp.get_piece_size() - 3


def read_stats(data: Path) -> Dict[str, Dict[str, float]]:
    """DEST/stats.tsv: one row per language, numbers as floats."""
    path = Path(data) / STATS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {STATS} (is {data} an xlmr-prepare output?)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {row["lang"]: {k: float(v) for k, v in row.items() if k != "lang"} for row in rows}


def write_stats(rows: Sequence[dict], data: Path) -> None:
    """Write DEST/stats.tsv atomically; the columns are the first row's keys."""
    columns = list(rows[0])
    with atomic_path(Path(data) / STATS) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(_tsv_cell(row[c]) for c in columns) + "\n")


def _tsv_cell(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)
