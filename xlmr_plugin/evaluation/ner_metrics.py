"""Entity-level precision, recall and F1 exactly as conlleval (and seqeval's default
mode) count them, for IOB1, IOB2 and IOBES tags alike.

An entity is a maximal chunk (type, first, last) found by conlleval's start/end
rules; it is correct when gold and prediction hold the same chunk. IOB1's "I-X
after O" and IOB2's "B-X" both start a chunk under those rules, which is why one
scorer serves CoNLL-2002 (IOB2) and CoNLL-2003 (IOB1) files.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

_TAG = re.compile(r"^([^-]*)-(.*)$")


def _parse(tag: str) -> tuple[str, str]:
    match = _TAG.match(tag)
    return match.groups() if match else (tag, "")


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as (type, first, last) token positions."""
    found, start = [], 0
    prev_tag, prev_type = "O", ""
    for i, tag in enumerate([*tags, "O"]):
        tag, type_ = _parse(tag)
        if _ends(prev_tag, tag, prev_type, type_):
            found.append((prev_type, start, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return found


def precision_recall_f1(correct: float, predicted: float, gold: float) -> dict[str, float]:
    """Percent precision, recall and their harmonic mean F1, each 0 where undefined, as conlleval."""
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Overall and per-type precision / recall / F1 (percent) over sentences of tags."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    correct, n_gold, n_pred = Counter(), Counter(), Counter()
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        gold_chunks, pred_chunks = set(chunks(g)), set(chunks(p))
        n_gold.update(c[0] for c in gold_chunks)
        n_pred.update(c[0] for c in pred_chunks)
        correct.update(c[0] for c in gold_chunks & pred_chunks)
    result = precision_recall_f1(sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    result["per_type"] = {t: precision_recall_f1(correct[t], n_pred[t], n_gold[t]) for t in sorted(n_gold | n_pred)}
    return result
