"""CoNLL-2002 / CoNLL-2003 named-entity files, read as distributed, and predictions
written back in conlleval's input format.

- CoNLL-2003 English ``eng.{train,testa,testb}``: ``word POS chunk NER``;
- CoNLL-2003 German ``deu.*``: ``word lemma POS chunk NER``;
- CoNLL-2002 Spanish ``esp.*`` and Dutch ``ned.*``: ``word [POS] NER``.

One token per line, the word first and the NER tag last; a blank line ends a
sentence; ``-DOCSTART-`` lines mark documents and are skipped. The 2003 files tag in
IOB1 (``B-`` only between two adjacent entities of one type), the 2002 files in IOB2
(``B-`` at every entity start); both are read as they are. The Spanish, Dutch and
German files are latin-1: the default encoding tries UTF-8 and falls back to latin-1
(logged), an explicit one is strict and names the first line it cannot decode.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from xlmr_plugin.storage.atomic import atomic_path

from xlmr.downstream.xnli import DataError

logger = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^(O|[BI]-\S+)$")


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]  # as in the file (IOB1 or IOB2)
    line: int  # line number of the first word, for messages


def _decoded(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text); a line that does not decode raises DataError naming it."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{number}: not {encoding} ({e.reason} at byte {e.start})") from None
            yield number, text.lstrip("\ufeff") if number == 1 else text


def _lines(path: Path, encoding: Optional[str]) -> list[tuple[int, str]]:
    if encoding is None:
        try:
            return list(_decoded(path, "utf-8"))
        except DataError as e:
            logger.warning("%s: reading the file as latin-1", e)
            return list(_decoded(path, "latin-1"))
    try:
        return list(_decoded(path, encoding))
    except DataError as e:
        raise DataError(f"{e}; the official CoNLL-2002 Spanish and Dutch and CoNLL-2003 German files "
                        f"are latin-1 (--encoding latin-1)") from None


def read_conll(path: Path, encoding: Optional[str] = None) -> list[Sentence]:
    """The sentences of one CoNLL NER file, in file order.

    ``encoding`` None: UTF-8, else latin-1 (a valid UTF-8 file with non-ASCII text is
    practically never latin-1 and the other way round)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CoNLL file {path}")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first = 0

    def end_sentence() -> None:
        if words:
            sentences.append(Sentence(tuple(words), tuple(tags), first))
            words.clear()
            tags.clear()

    for number, text in _lines(path, encoding):
        columns = text.split()
        if not columns or columns[0] == DOCSTART:
            end_sentence()
            continue
        if len(columns) < 2:
            raise DataError(f"{path}:{number}: one column {text.strip()!r}; expected the word first and the NER tag last")
        tag = columns[-1]
        if not _TAG.match(tag):
            raise DataError(f"{path}:{number}: unknown tag {tag!r}; expected O, B-TYPE or I-TYPE (IOB1 or IOB2)")
        if not words:
            first = number
        words.append(columns[0])
        tags.append(tag)
    end_sentence()
    if not sentences:
        raise DataError(f"{path}: no sentence")
    logger.info("%s: %d sentences, %d words, %s tags", path, len(sentences),
                sum(len(s.words) for s in sentences), scheme(sentences))
    return sentences


def to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an ``I-X`` that starts an entity (after ``O`` or another type)
    becomes ``B-X``; IOB2 tags are returned unchanged. conlleval finds the same
    entities in both sequences."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def scheme(sentences: Sequence[Sentence]) -> str:
    """"IOB1" when some entity starts with ``I-``, else "IOB2"."""
    return "IOB1" if any(list(s.tags) != to_iob2(s.tags) for s in sentences) else "IOB2"


def write_predictions(path: Path, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """``word gold predicted`` per line, a blank line after each sentence: the input
    of conlleval (``conlleval < path``) and of ``read_predictions``."""
    if len(sentences) != len(predicted):
        raise ValueError(f"{len(sentences)} sentences but {len(predicted)} predicted")
    lines = []
    for sentence, tags in zip(sentences, predicted):
        if len(tags) != len(sentence.words):
            raise ValueError(f"sentence at line {sentence.line}: {len(sentence.words)} words but {len(tags)} tags")
        lines += [f"{w} {g} {p}\n" for w, g, p in zip(sentence.words, sentence.tags, tags)] + ["\n"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sentences of a file written by ``write_predictions``."""
    gold: list[list[str]] = [[]]
    predicted: list[list[str]] = [[]]
    for number, text in _decoded(Path(path), "utf-8"):
        columns = text.split()
        if not columns:
            if gold[-1]:
                gold.append([])
                predicted.append([])
            continue
        if len(columns) < 3:
            raise DataError(f"{path}:{number}: expected 'word gold predicted', got {text.strip()!r}")
        gold[-1].append(columns[-2])
        predicted[-1].append(columns[-1])
    if not gold[-1]:
        gold.pop()
        predicted.pop()
    return gold, predicted
