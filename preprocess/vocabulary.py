"""The shared SentencePiece vocabulary and fairseq's dict.txt in XLM-R's layout.

XLM-R's SentencePiece model has <unk>=0, <s>=1, </s>=2 and no padding piece;
fairseq's dictionary starts with <s> <pad> </s> <unk>, so listing the pieces from
SentencePiece id 3 on in dict.txt makes fairseq id = SentencePiece id + 1 for
every piece. The task appends <mask> last (250,002 embeddings for 250k pieces).
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import sentencepiece as spm


logger = logging.getLogger(__name__)

XLMR_SPECIAL_IDS = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
_TOO_LARGE = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
# fairseq splits a dict.txt line at its last space: a piece holds anything but ' '
_DICT_LINE = re.compile(r"^([^ ]+) (-?\d+)( #fairseq:overwrite)?$")


# Peak memory of SentencePiece's unigram training per byte of sample text, measured on a
# mix of ../shared/corpus/mono (en, de, fr, ja, ru, zh; vocabulary 8000): 215 MB at 10 MB
# of sample, 745 MB at 40 MB, a slope of 17.7 (its suffix array and seed pieces).
SPM_BYTES_PER_SAMPLE_BYTE = 18


class VocabularyError(ValueError):
    """A vocabulary that cannot be built or used; the message names the cause."""


def train_sentencepiece(
    sample: Path, model_out: Path, vocab_size: int, threads: int, character_coverage: float = 0.9995
) -> None:
    """Train XLM-R's unigram model on the α-sampled sentences in `sample`."""
    with tempfile.TemporaryDirectory(dir=model_out.parent, prefix=".spm-") as tmp:
        prefix = Path(tmp) / "spm"
        try:
            spm.SentencePieceTrainer.train(
                input=str(sample),
                model_prefix=str(prefix),
                vocab_size=vocab_size,
                model_type="unigram",
                character_coverage=character_coverage,
                num_threads=threads,
                input_sentence_size=0,  # the sample is already drawn; use all of it
                shuffle_input_sentence=True,
                max_sentence_length=1 << 16,  # CC-100 paragraphs exceed the 4 KB default
                minloglevel=1,
                **XLMR_SPECIAL_IDS,
            )
        except RuntimeError as e:
            match = _TOO_LARGE.search(str(e))
            if match is None:
                raise
            raise VocabularyError(
                f"--vocab-size {match.group(1)} is more pieces than this corpus supports: "
                f"the largest size that can work is {match.group(2)}"
            ) from None
        prefix.with_suffix(".model").replace(model_out)


def piece_counts(model: Path, lines: Iterable[str], threads: int, batch: int = 16384) -> np.ndarray:
    """How often each piece occurs when `lines` are encoded: the counts of dict.txt,
    which `--freq-weighted-replacement` uses to draw random replacement tokens."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    counts = np.zeros(sp.get_piece_size(), dtype=np.int64)

    def add(chunk: list[str]) -> None:
        ids = sp.encode(chunk, num_threads=threads)
        flat = np.fromiter((i for line in ids for i in line), dtype=np.int64)
        counts[:] += np.bincount(flat, minlength=len(counts))

    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == batch:
            add(chunk)
            chunk = []
    if chunk:
        add(chunk)
    return counts


def check_dictionary_file(path: Path) -> int:
    """Validate a dict.txt line by line (fairseq's loader names no line); return its size."""
    entries = 0
    with open(path, encoding="utf-8") as f:
        for entries, line in enumerate(f, 1):
            if not _DICT_LINE.match(line.rstrip("\n")):
                raise VocabularyError(f"{path}:{entries}: expected '<piece> <count>', got {line.rstrip()!r}")
    return entries


def check_pair(model: Path, dictionary: Path) -> None:
    """Accept an official-style (sentencepiece model, dict.txt) pair, or say why not."""
    try:
        sp = spm.SentencePieceProcessor(model_file=str(model))
    except (OSError, RuntimeError) as e:
        raise VocabularyError(f"{model}: not a SentencePiece model ({e})") from None
    entries = check_dictionary_file(dictionary)
    if entries == 0:
        raise VocabularyError(f"{dictionary}: empty dictionary")
    if entries != sp.get_piece_size() - 3:
        logger.warning(
            "%s has %d entries but %s has %d pieces: fairseq id = SentencePiece id + 1 does not hold; "
            "pieces are mapped through the dictionary by name",
            dictionary, entries, model, sp.get_piece_size(),
        )
