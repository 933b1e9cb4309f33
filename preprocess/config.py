"""What an `xlmr-prepare` run is asked to do, as typed values parsed and checked once
by `prepare.parse_args`; each step of the pipeline takes the part it needs.

The parts follow what depends on them: `SplitSettings` is what a language's shards
depend on besides the vocabulary (their fingerprint), `VocabularySettings` what a
trained vocabulary depends on (recorded in DEST/vocab.json), so that a rerun with
other values redoes, or refuses, exactly what they change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from xlmr.preprocess.vocabulary import XLMR_SPECIAL_IDS
from xlmr.slurm.executor import ExecutorOptions


@dataclass(frozen=True)
class SplitSettings:
    """How a language file is read and split into train and valid."""

    valid_docs: int  # --valid-docs: documents held out per language (at most a tenth)
    seed: int  # --seed: seeds the held-out draw and the vocabulary sample
    skip_invalid: bool  # --skip-invalid: drop (and count) lines that are not UTF-8


class SettingError(ValueError):
    """A setting that cannot work; the message names its flag."""


@dataclass(frozen=True)
class VocabularySettings:
    """How the shared SentencePiece vocabulary is trained when none is given.

    Checked when made: SentencePiece would reject these values only after the whole
    corpus has been scanned and sampled, and without naming the flag.
    """

    vocab_size: int  # --vocab-size
    alpha: float  # --alpha: q_i ∝ p_i^α for the sample of sentences (and stats.tsv's second q column)
    spm_sample_lines: int  # --spm-sample-lines: sentences to train on, at most
    character_coverage: float  # --character-coverage
    spm_memory_gb: float  # --spm-memory-gb: the sample is cut so that training fits in this

    def __post_init__(self) -> None:
        special = sum(1 for piece_id in XLMR_SPECIAL_IDS.values() if piece_id >= 0)
        if self.vocab_size <= special:
            raise SettingError(f"--vocab-size must be more than the {special} special pieces, got {self.vocab_size}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise SettingError(f"--alpha must be a number >= 0 (0: languages alike, 1: as in the corpus), "
                               f"got {self.alpha}")
        if self.spm_sample_lines < 1:
            raise SettingError(f"--spm-sample-lines must be at least 1, got {self.spm_sample_lines}")
        if not self.spm_memory_gb > 0:
            raise SettingError(f"--spm-memory-gb must be positive, got {self.spm_memory_gb}")
        if not 0 < self.character_coverage <= 1:
            raise SettingError(f"--character-coverage must be in (0, 1], got {self.character_coverage}")


@dataclass(frozen=True)
class GivenVocabulary:
    """--spm-model and --dict: a vocabulary made elsewhere (e.g. XLM-R's), used as it is."""

    spm_model: Path
    dict: Path


@dataclass(frozen=True)
class PrepareConfig:
    """One `xlmr-prepare CORPUS DEST` run."""

    corpus: Path  # directory of <lang>.txt[.gz|.xz] files
    dest: Path  # output directory; finished languages are kept on a rerun
    langs: Optional[tuple[str, ...]]  # --langs, in the order given; None: every file
    split: SplitSettings
    vocabulary: VocabularySettings
    given: Optional[GivenVocabulary]  # None: reuse DEST's vocabulary or train one
    workers: int  # --workers: local processes
    shard_gb: float  # --shard-gb: a larger language file is encoded as parallel pieces
    shard_tokens: int  # --shard-tokens: tokens per training shard (cut at document breaks)
    executor: ExecutorOptions  # --executor and the SLURM resources of the binarize array
