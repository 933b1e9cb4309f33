"""CoNLL sentences binarized for the ``xlmr_ner`` task with the pretrained vocabulary.

Each word is encoded on its own, as XLM-R tokenizes pre-split words: SentencePiece
of the word, which begins with the word-start marker ``▁``, then fairseq's dict.txt
ids (preprocess.binarize ``Encoder``, the path of ``xlmr-prepare``). The word's tag
goes on its first piece; its other pieces and ``</s>`` get ``<pad>``, which the
criterion and the predictions skip. Tags are stored in IOB2 (see ``label_dictionary``).

A sentence with more pieces than the model has positions is cut at word boundaries
into consecutive windows of at most ``window`` pieces, each an item of its own,
without overlap: no word is dropped, every word is predicted once, in order. A
single word longer than a window keeps its first ``window`` pieces (counted, logged).
A word SentencePiece encodes to nothing (a zero-width character) becomes ``<unk>``.

Layout, per split: ``input0/<split>.{bin,idx}`` (pieces + ``</s>``, the task prepends
``<s>``) and ``label/<split>.{bin,idx}`` of the same lengths, each with its dict.txt.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import best_fitting_int_dtype

from xlmr.preprocess.binarize import Encoder, ShardWriter

from xlmr.downstream.conll import Sentence, to_iob2
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)


def label_dictionary(sentences: Iterable[Sentence]) -> Dictionary:
    """fairseq Dictionary of the IOB2 tags of ``sentences``: ``O`` first, then sorted.

    The model predicts IOB2 whatever the files use: IOB1's ``B-`` (two adjacent
    entities of one type) is too rare in CoNLL-2003 to learn, and one tag set lets a
    model trained on English (IOB1) tag Spanish and Dutch (IOB2) and train on all four
    together. Scores are unchanged: conlleval finds the same entities in a file's IOB1
    tags and in their IOB2 conversion, and scores IOB2 predictions against either."""
    tags = {tag for s in sentences for tag in to_iob2(s.tags)}
    dictionary = Dictionary()
    for tag in ["O", *sorted(tags - {"O"})]:
        dictionary.add_symbol(tag)
    return dictionary


def windows(piece_counts: Sequence[int], window: int) -> list[tuple[int, int]]:
    """Consecutive word ranges [start, end) of at most ``window`` pieces each (a longer
    word alone in its range), covering every word once."""
    ranges, start, used = [], 0, 0
    for i, n in enumerate(piece_counts):
        if used and used + n > window:
            ranges.append((start, i))
            start, used = i, 0
        used += n
    if piece_counts:
        ranges.append((start, len(piece_counts)))
    return ranges


@dataclass
class SplitStats:
    sentences: int = 0
    words: int = 0
    items: int = 0  # windows: more than sentences when some were too long
    split_sentences: int = 0
    cut_words: int = 0  # words longer than a window, cut to it
    empty_words: int = 0  # words with no piece, encoded as <unk>


def word_pieces(encoder: Encoder, words: Sequence[str]) -> list[np.ndarray]:
    """fairseq ids of each word's pieces (each word encoded alone, starting with ``▁``)."""
    flat, sizes = encoder.encode(list(words))
    ends = np.cumsum(sizes)
    return [flat[end - size:end - 1] for end, size in zip(ends, sizes)]  # without each word's </s>


def write_token_classification(
    sentences: Sequence[Sentence], spm_model: Path, dict_path: Path, labels: Dictionary, out: Path, split: str,
    window: int,
) -> SplitStats:
    """Write ``out/{input0,label}/<split>.{bin,idx}`` (and their dict.txt)."""
    if window < 1:
        raise ValueError(f"window {window}: a window holds at least one piece")
    encoder = Encoder(spm_model, dict_path)
    stats = SplitStats(sentences=len(sentences))
    for name in ("input0", "label"):
        (out / name).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dict_path, out / "input0" / layout.DICT)
    labels.save(str(out / "label" / layout.DICT))
    label_dtype = best_fitting_int_dtype(len(labels))
    tokens_out = ShardWriter(out / "input0" / split, encoder.dtype)
    labels_out = ShardWriter(out / "label" / split, label_dtype)
    pad, eos, unk = labels.pad(), encoder.dictionary.eos(), encoder.dictionary.unk()
    all_pieces = iter(word_pieces(encoder, [w for s in sentences for w in s.words]))
    for sentence in sentences:
        pieces = [next(all_pieces) for _ in sentence.words]
        for i, p in enumerate(pieces):
            if len(p) == 0:
                pieces[i] = np.array([unk], dtype=encoder.dtype)
                stats.empty_words += 1
            elif len(p) > window:
                pieces[i] = p[:window]
                stats.cut_words += 1
        tag_ids = [labels.index(tag) for tag in to_iob2(sentence.tags)]
        ranges = windows([len(p) for p in pieces], window)
        stats.words += len(pieces)
        stats.items += len(ranges)
        stats.split_sentences += len(ranges) > 1
        for start, end in ranges:
            tokens = np.concatenate([*pieces[start:end], [eos]]).astype(encoder.dtype)
            tags = np.full(len(tokens), pad, dtype=label_dtype)
            firsts = np.cumsum([0] + [len(p) for p in pieces[start:end - 1]])
            tags[firsts] = tag_ids[start:end]
            size = np.array([len(tokens)], dtype=np.int32)
            tokens_out.add(tokens, size)
            labels_out.add(tags, size)
    tokens_out.close()
    labels_out.close()
    if stats.split_sentences or stats.cut_words or stats.empty_words:
        logger.warning("%s: %d sentences longer than %d pieces split into windows, %d words cut to %d pieces, "
                       "%d words without a piece encoded as <unk>", split, stats.split_sentences, window,
                       stats.cut_words, window, stats.empty_words)
    logger.info("%s: %s", split, stats)
    return stats
