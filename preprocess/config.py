"""What an `xlmr-prepare` run is asked to do, as typed values parsed and checked once
by `prepare.parse_args`; each step of the pipeline takes the part it needs.

The parts follow what depends on them: `SplitSettings` is what a language's shards
depend on besides the vocabulary (their fingerprint), `VocabularySettings` what a
trained vocabulary depends on (recorded in DEST/vocab.json), so that a rerun with
other values redoes, or refuses, exactly what they change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from xlmr.slurm.executor import ExecutorOptions


@dataclass(frozen=True)
class SplitSettings:
    """How a language file is read and split into train and valid."""

    valid_docs: int  # --valid-docs: documents held out per language (at most a tenth)
    seed: int  # --seed: seeds the held-out draw and the vocabulary sample
    skip_invalid: bool  # --skip-invalid: drop (and count) lines that are not UTF-8


@dataclass(frozen=True)
class VocabularySettings:
    """How the shared SentencePiece vocabulary is trained when none is given."""

    vocab_size: int  # --vocab-size
    alpha: float  # --alpha: q_i ∝ p_i^α for the sample of sentences (and stats.tsv's second q column)
    spm_sample_lines: int  # --spm-sample-lines: sentences to train on, at most
    character_coverage: float  # --character-coverage


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
    shard_gb: float  # --shard-gb: a larger language file is binarized as parallel shards
    executor: ExecutorOptions  # --executor and the SLURM resources of the binarize array
