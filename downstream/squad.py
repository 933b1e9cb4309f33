"""SQuAD v1.1 and MLQA, read in their distributed json format.

Both are ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}``; MLQA ships one file per (context
language, question language) pair, ``{dev,test}-context-<c>-question-<q>.json``, under
``MLQA_V1/{dev,test}/``. SQuAD's are ``train-v1.1.json`` and ``dev-v1.1.json``.

An answer whose ``answer_start`` does not point at its text in the context is counted
and reported; for training the question is dropped, as the official BERT / XLM-R
preprocessing does ("Could not find answer"). Evaluation keeps every question: the
metric reads only the answer texts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from xlmr.downstream.xnli import DataError

logger = logging.getLogger(__name__)

MLQA_SPLITS = ("dev", "test")


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    paragraph: int  # index into SquadFile.contexts
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class SquadFile:
    path: Path
    contexts: tuple[str, ...]
    questions: tuple[Question, ...]
    mismatched: int  # answers whose answer_start does not match their text

    def golds(self) -> dict[str, list[str]]:
        """question id -> gold answer texts, what qa_metrics scores against."""
        return {q.qid: [a.text for a in q.answers] for q in self.questions}


def _field(record: dict, key: str, kind: type, where: str):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise DataError(f"{where}: no {kind.__name__} field '{key}'")
    return value


def _answers(qa: dict, context: str, where: str) -> tuple[list[Answer], int]:
    """The question's answers and how many of them do not match the context."""
    answers, bad = [], 0
    for answer in _field(qa, "answers", list, where):
        text, start = _field(answer, "text", str, where), _field(answer, "answer_start", int, where)
        if context[start:start + len(text)] != text:
            bad += 1
            logger.debug("%s: answer %r is not at character %d of the context", where, text, start)
        answers.append(Answer(text, start))
    if not answers:
        raise DataError(f"{where}: no answers (SQuAD v1.1 questions all have one)")
    return answers, bad


def read_squad(path: Path, training: bool = False) -> SquadFile:
    """Read a SQuAD v1.1 / MLQA json file; errors name the file and the question id.

    ``training`` drops the questions whose first answer (the one trained on) does not
    match the context, so that every training target points at its answer's text.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not json ({e.msg})") from None
    contexts, questions, mismatched, dropped, seen = [], [], 0, 0, set()
    for a, article in enumerate(_field(data, "data", list, f"{path}")):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"{path}: article {a}")):
            context = _field(paragraph, "context", str, f"{path}: article {a} paragraph {p}")
            for qa in _field(paragraph, "qas", list, f"{path}: article {a} paragraph {p}"):
                qid = _field(qa, "id", str, f"{path}: article {a} paragraph {p}")
                where = f"{path}: question {qid}"
                if qid in seen:
                    raise DataError(f"{where}: the id appears twice")
                seen.add(qid)
                answers, bad = _answers(qa, context, where)
                mismatched += bad
                if training and context[answers[0].start:answers[0].start + len(answers[0].text)] != answers[0].text:
                    dropped += 1
                    continue
                questions.append(Question(qid, _field(qa, "question", str, where), len(contexts), tuple(answers)))
            contexts.append(context)
    if mismatched:
        logger.warning("%s: %d answers do not match the context at their answer_start%s", path, mismatched,
                       f"; {dropped} training questions dropped" if training else "")
    logger.info("%s: %d questions over %d paragraphs", path, len(questions), len(contexts))
    return SquadFile(path, tuple(contexts), tuple(questions), mismatched)


def mlqa_path(root: Path, split: str, context_lang: str, question_lang: Optional[str] = None) -> Path:
    """The MLQA file of a language pair under ``root`` (MLQA_V1, or its dev/ or test/ folder)."""
    if split not in MLQA_SPLITS:
        raise ValueError(f"MLQA has no split '{split}' (it has {', '.join(MLQA_SPLITS)})")
    name = f"{split}-context-{context_lang}-question-{question_lang or context_lang}.json"
    for candidate in (Path(root) / split / name, Path(root) / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no MLQA file {name} in {root} or {Path(root) / split}")
