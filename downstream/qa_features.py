"""Span-extraction QA features: question + context windows in XLM-R's pair layout, and
the way back from a predicted token span to the exact context substring.

Each window is ``<s> question </s> </s> context[a:b] </s>`` (RoBERTa's sentence-pair
encoding), pieces and ids exactly as ``xlmr-prepare`` makes them (``preprocess.binarize``'s
Encoder table). Long contexts are cut into windows of at most ``max_seq_length`` tokens
whose starts are ``doc_stride`` pieces apart, the BERT / XLM-R / XTREME recipe. Every
context piece keeps its character span in the context (SentencePiece's own offsets, so
NFKC-normalised characters map back to the original text), which is how a predicted
span becomes the answer text the official scripts score.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import atomic_path
from xlmr.preprocess.binarize import Encoder, ShardWriter

from xlmr.downstream.squad import Answer, SquadFile

logger = logging.getLogger(__name__)

BOS, EOS = 0, 2  # fairseq's <s> and </s>
SPECIAL = 4  # <s> before the question, </s> </s> between, </s> at the end


@dataclass(frozen=True)
class WindowConfig:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def __post_init__(self) -> None:
        if self.max_seq_length - self.max_query_length - SPECIAL < 1:
            raise ValueError(f"max_seq_length {self.max_seq_length} leaves no room for context after a "
                             f"{self.max_query_length}-piece question and {SPECIAL} special tokens")
        if self.doc_stride < 1:
            raise ValueError(f"doc_stride must be positive, not {self.doc_stride}")


class PieceEncoder:
    """Text -> (fairseq ids, character span of each piece, whitespace stripped)."""

    def __init__(self, spm_model: Path, dict_path: Path):
        self.encoder = Encoder(spm_model, dict_path)
        self.dict_path = Path(dict_path)

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        pieces = self.encoder.sp.encode(text, out_type="proto").pieces
        ids = self.encoder.table[np.array([p.id for p in pieces], dtype=np.int64)]
        # SentencePiece reports UTF-8 byte offsets in the original text: turn them into characters
        char_starts = np.cumsum([0] + [len(c.encode("utf-8")) for c in text])
        bytes_ = np.array([(p.begin, p.end) for p in pieces], dtype=np.int64).reshape(-1, 2)
        spans = np.searchsorted(char_starts, bytes_)
        # "▁word" covers the space before the word: start at the next non-space character
        next_char = np.arange(len(text) + 1)
        space = np.array([c.isspace() for c in text] + [False])
        next_char[space] = len(text) + 1
        next_char = np.minimum.accumulate(next_char[::-1])[::-1]
        spans[:, 0] = np.minimum(next_char[spans[:, 0]], spans[:, 1])
        return ids, spans


def windows(n_pieces: int, room: int, stride: int) -> list[tuple[int, int]]:
    """(first piece, piece count) of each window over a context of ``n_pieces``."""
    out, start = [], 0
    while True:
        length = min(room, n_pieces - start)
        out.append((start, length))
        if start + length >= n_pieces:
            return out
        start += min(length, stride)


def answer_pieces(spans: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """First and last piece overlapping the characters [start, end) of the context."""
    nonempty = spans[:, 1] > spans[:, 0]
    first = np.flatnonzero(nonempty & (spans[:, 1] > start))
    last = np.flatnonzero(nonempty & (spans[:, 0] < end))
    if not len(first) or not len(last):
        raise ValueError(f"no piece covers characters {start}-{end}")
    return int(first[0]), int(last[-1])


def _target_pieces(context: str, spans: np.ndarray, answer: Answer) -> tuple[int, int]:
    """The pieces of the answer trained on; (-1, -1), no window holds it, where the answer
    does not match the context (kept in evaluation files only, see squad.read_squad)."""
    end = answer.start + len(answer.text)
    if not answer.text.strip() or context[answer.start:end] != answer.text:
        return -1, -1
    return answer_pieces(spans, answer.start, end)


def write_qa_split(data: SquadFile, pieces: PieceEncoder, cfg: WindowConfig, out: Path, split: str) -> int:
    """Binarize ``data`` as ``out/input/<split>`` (windows), ``out/target/<split>`` (start,
    end token of the first answer; 0 = <s> where the window lacks it) and
    ``out/<split>.windows.json`` (what prediction maps back with). Returns the window count."""
    dtype = pieces.encoder.dtype
    contexts = [pieces(c) for c in data.contexts]
    tokens, targets, meta_windows = [], [], []
    for q, question in enumerate(data.questions):
        q_ids = pieces(question.question)[0][: cfg.max_query_length]
        ctx_ids, spans = contexts[question.paragraph]
        first, last = _target_pieces(data.contexts[question.paragraph], spans, question.answers[0])
        offset = len(q_ids) + 3  # <s> question </s> </s>
        for start, length in windows(len(ctx_ids), cfg.max_seq_length - len(q_ids) - SPECIAL, cfg.doc_stride):
            tokens.append(np.concatenate([[BOS], q_ids, [EOS, EOS], ctx_ids[start:start + length], [EOS]]))
            inside = start <= first and last < start + length
            targets.append([first - start + offset, last - start + offset] if inside else [0, 0])
            meta_windows.append([q, start, length, offset])
    for name, rows, kind in (("input", tokens, dtype), ("target", targets, np.int32)):
        (out / name).mkdir(parents=True, exist_ok=True)
        writer = ShardWriter(out / name / split, kind)
        writer.add(np.concatenate(rows).astype(kind) if rows else np.zeros(0, kind),
                   np.array([len(r) for r in rows], dtype=np.int32))
        writer.close()
    shutil.copyfile(pieces.dict_path, out / layout.DICT)
    meta = {
        "source": str(data.path),
        "questions": [q.qid for q in data.questions],
        "paragraphs": [q.paragraph for q in data.questions],
        "contexts": list(data.contexts),
        "spans": [spans.tolist() for _, spans in contexts],
        "windows": meta_windows,
    }
    with atomic_path(out / f"{split}.windows.json") as tmp:
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    logger.info("%s: %d questions -> %d windows (%s)", split, len(data.questions), len(tokens), data.path)
    return len(tokens)


def _max_context(question_windows: Sequence[tuple[int, int]], window: tuple[int, int], piece: int) -> bool:
    """Whether ``window`` gives ``piece`` the most context of all windows holding it (BERT's
    ``_check_is_max_context``): a piece near a window edge is scored from another window."""
    def score(w):
        start, length = w
        return min(piece - start, start + length - 1 - piece) + 0.01 * length
    best = max((w for w in question_windows if w[0] <= piece < w[0] + w[1]), key=score)
    return best == window


def best_spans(meta: dict, start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
               n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """question id -> answer text: over all windows of a question, the span (start <= end,
    at most ``max_answer_length`` pieces, both ends in the context) with the highest start +
    end logit, candidates drawn from each window's ``n_best`` starts and ends."""
    per_question: dict[int, list[tuple[int, int]]] = {}
    for q, start, length, _ in meta["windows"]:
        per_question.setdefault(q, []).append((start, length))
    best: dict[int, tuple[float, str]] = {}
    for w, (q, start, length, offset) in enumerate(meta["windows"]):
        paragraph = meta["paragraphs"][q]
        context, spans = meta["contexts"][paragraph], meta["spans"][paragraph]
        s_logits = start_logits[w][offset:offset + length]
        e_logits = end_logits[w][offset:offset + length]
        starts = np.argsort(-s_logits, kind="stable")[:n_best]
        ends = np.argsort(-e_logits, kind="stable")[:n_best]
        for i in starts:
            if not _max_context(per_question[q], (start, length), start + int(i)):
                continue
            for j in ends:
                if j < i or j - i + 1 > max_answer_length:
                    continue
                text = context[spans[start + i][0]:spans[start + j][1]]
                value = float(s_logits[i] + e_logits[j])
                if text and (q not in best or value > best[q][0]):
                    best[q] = (value, text)
    return {qid: best[q][1] if q in best else "" for q, qid in enumerate(meta["questions"])}
