"""XNLI and MultiNLI, read in their distributed formats and binarized into
fairseq's `sentence_prediction` layout with the pretrained model's vocabulary.

- XNLI-1.0 `xnli.{dev,test}.tsv`: a header, then one row per (language, pair),
  columns found by name (`language`, `gold_label`, `sentence1`, `sentence2`);
- XNLI-MT-1.0 `multinli.train.<lang>.tsv`: `premise`, `hypo`, `label`, where
  contradiction is spelled `contradictory`;
- MultiNLI 1.0 `multinli_1.0_*.jsonl`: `sentence1`, `sentence2`, `gold_label`,
  which is `-` where annotators did not agree (those pairs are dropped, counted).

Output, per split: `input0/`, `input1/` (premise, hypothesis: pieces + </s>, the
task prepends <s> and the separator) and `label/`, each with its dict.txt.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from xlmr.preprocess.binarize import Encoder, ShardWriter
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

LABELS = ("contradiction", "entailment", "neutral")
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
_SPELLINGS = {"contradictory": "contradiction"}


class DataError(ValueError):
    """A malformed data file; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    premise: str
    hypothesis: str
    label: str


def _label(raw: str, where: str) -> str:
    label = _SPELLINGS.get(raw.strip(), raw.strip())
    if label not in LABELS:
        raise DataError(f"{where}: unknown label {raw!r} (expected one of {', '.join(LABELS)})")
    return label


def _tsv_rows(path: Path, columns: Sequence[str]) -> Iterable[tuple[int, dict]]:
    """(line number, row) with the named columns; quotes are text, as in the XNLI files."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        missing = [c for c in columns if header is None or c not in header]
        if missing:
            raise DataError(f"{path}:1: no column {', '.join(missing)} in the header")
        where = {c: header.index(c) for c in columns}
        for row in reader:
            if len(row) < len(header):
                raise DataError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}")
            yield reader.line_num, {c: row[i] for c, i in where.items()}


def read_xnli(path: Path) -> dict[str, list[Pair]]:
    """XNLI dev/test: language -> its pairs, in file order."""
    pairs: dict[str, list[Pair]] = {}
    for line, row in _tsv_rows(path, ("language", "gold_label", "sentence1", "sentence2")):
        label = _label(row["gold_label"], f"{path}:{line}")
        pairs.setdefault(row["language"], []).append(Pair(row["sentence1"], row["sentence2"], label))
    return pairs


def read_xnli_mt(path: Path) -> list[Pair]:
    """One language's machine-translated MultiNLI training set (translate-train)."""
    return [Pair(row["premise"], row["hypo"], _label(row["label"], f"{path}:{line}"))
            for line, row in _tsv_rows(path, ("premise", "hypo", "label"))]


def read_translate_test(path: Path) -> list[Pair]:
    """One language's XNLI dev/test pairs machine-translated into English (XNLI-MT-1.0
    `xnli/xnli.{dev,test}.<lang>.tsv`), for the translate-test protocol. The columns are
    found by name: XNLI-MT's `premise`/`hypo`/`label`, or XNLI's `sentence1`/`sentence2`/`gold_label`."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    if "premise" in header:
        return read_xnli_mt(path)
    return [Pair(row["sentence1"], row["sentence2"], _label(row["gold_label"], f"{path}:{line}"))
            for line, row in _tsv_rows(path, ("gold_label", "sentence1", "sentence2"))]


def read_multinli(path: Path) -> list[Pair]:
    """English MultiNLI, the cross-lingual transfer training set."""
    pairs, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                raw, premise, hypothesis = record["gold_label"], record["sentence1"], record["sentence2"]
            except (json.JSONDecodeError, KeyError) as e:
                raise DataError(f"{path}:{line_no}: not a MultiNLI record ({e})") from None
            if raw == "-":
                dropped += 1
                continue
            pairs.append(Pair(premise, hypothesis, _label(raw, f"{path}:{line_no}")))
    logger.info("%s: %d pairs, %d without a gold label dropped", path, len(pairs), dropped)
    return pairs


def write_sentence_prediction(pairs: Sequence[Pair], spm_model: Path, dict_path: Path, out: Path, split: str) -> None:
    """Binarize `pairs` as `out/{input0,input1,label}/<split>.{bin,idx}`."""
    encoder = Encoder(spm_model, dict_path)
    for name, texts in (("input0", [p.premise for p in pairs]), ("input1", [p.hypothesis for p in pairs])):
        (out / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dict_path, out / name / layout.DICT)
        writer = ShardWriter(out / name / split, encoder.dtype)
        writer.add(*encoder.encode(texts))
        writer.close()
    (out / "label").mkdir(parents=True, exist_ok=True)
    (out / "label" / layout.DICT).write_text("".join(f"{label} 1\n" for label in LABELS), encoding="utf-8")
    nspecial, eos = layout.SPECIAL_SYMBOLS_BEFORE, 2  # fairseq's <s> <pad> </s> <unk> come before the labels
    ids = np.array([[nspecial + LABELS.index(p.label), eos] for p in pairs], dtype=encoder.dtype).reshape(-1)
    writer = ShardWriter(out / "label" / split, encoder.dtype)
    writer.add(ids, np.full(len(pairs), 2, dtype=np.int32))
    writer.close()
