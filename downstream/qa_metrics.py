"""SQuAD v1.1 and MLQA exact match and F1, as their official evaluation scripts
compute them (scores in percent, each question's best over its gold answers).

SQuAD normalises with ASCII punctuation and English articles; MLQA removes every
Unicode punctuation character and each language's articles, and splits Chinese
into characters ("mixed segmentation") so that F1 is not all-or-nothing there.
"""
from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from typing import Callable, Mapping, Sequence

ASCII_PUNCT = frozenset(string.punctuation)
UNICODE_PUNCT = frozenset(
    chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")
) | ASCII_PUNCT
# MLQA's articles per language; languages without articles keep their text
ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": r"\sال^|ال",
    "hi": None,
    "zh": None,
}
MLQA_LANGS = tuple(ARTICLES)
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _mixed_segmentation(text: str) -> list[str]:
    """Every CJK character and punctuation mark a token; other runs split on spaces."""
    tokens, run = [], ""
    for char in text:
        if _CJK.search(char) or char in UNICODE_PUNCT:
            tokens += run.split()
            run = ""
            tokens.append(char)
        else:
            run += char
    return tokens + run.split()


def normalize_squad(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in ASCII_PUNCT)
    return " ".join(re.sub(ARTICLES["en"], " ", text).split())


def normalize_mlqa(text: str, lang: str) -> str:
    if lang not in ARTICLES:
        raise ValueError(f"MLQA has no language '{lang}' (it has {', '.join(MLQA_LANGS)})")
    text = "".join(c for c in text.lower() if c not in UNICODE_PUNCT)
    if ARTICLES[lang]:
        text = re.sub(ARTICLES[lang], " ", text)
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def _f1(prediction: str, gold: str) -> float:
    predicted, expected = prediction.split(), gold.split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def score(
    predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], normalize: Callable[[str], str]
) -> dict[str, float]:
    """EM and F1 in percent over the questions of `golds` (a missing prediction scores 0)."""
    em = f1 = 0.0
    for qid, answers in golds.items():
        prediction = normalize(predictions.get(qid, ""))
        normalized = [normalize(a) for a in answers]
        em += max(float(prediction == a) for a in normalized)
        f1 += max(_f1(prediction, a) for a in normalized)
    n = max(1, len(golds))
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "questions": len(golds)}


def squad_score(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]]) -> dict[str, float]:
    return score(predictions, golds, normalize_squad)


def mlqa_score(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], lang: str) -> dict[str, float]:
    return score(predictions, golds, lambda text: normalize_mlqa(text, lang))


def gold_answers(squad_json: Mapping) -> dict[str, list[str]]:
    """question id -> its gold answer texts, from a SQuAD v1.1 / MLQA json file."""
    return {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in squad_json["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]
    }


