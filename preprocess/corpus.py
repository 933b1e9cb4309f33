"""Reading a CC-100 style corpus: one file per language, one paragraph a line,
documents separated by an empty line.

Every reader here streams: a language of CC-100 can be larger than memory, so a
file is scanned once for counts and read again for each later step.
"""
from __future__ import annotations

import gzip
import itertools
import lzma
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence

import numpy as np

SUFFIXES = (".txt", ".txt.gz", ".txt.xz")
# what reading a damaged .gz or .xz file raises: EOFError when it is cut short, the others when
# its bytes are wrong (BadGzipFile also for a wrong checksum, found only at the end of the file)
_DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


class CorpusError(ValueError):
    """Bad input; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class LanguageFile:
    lang: str
    path: Path


@dataclass
class LanguageScan:
    """Counts from one pass over a language file."""

    lang: str
    path: Path
    documents: int = 0
    lines: int = 0
    doc_lines: list = field(default_factory=list, repr=False)  # lines per document
    skipped: int = 0  # invalid UTF-8 lines dropped under --skip-invalid


def _lang_of(path: Path) -> Optional[str]:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def discover(corpus: Path, langs: Optional[Sequence[str]] = None) -> list[LanguageFile]:
    """The language files of `corpus`, sorted by language, or those of `langs`."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise CorpusError(f"{corpus}: not a directory")
    found: dict[str, Path] = {}
    for path in sorted(corpus.iterdir()):
        lang = _lang_of(path)
        if lang is None or not path.is_file():
            continue
        if lang in found:
            raise CorpusError(f"language '{lang}' appears twice: {found[lang]} and {path}")
        found[lang] = path
    if langs is None:
        if not found:
            raise CorpusError(f"{corpus}: no <lang>{'/'.join(SUFFIXES)} files")
        return [LanguageFile(lang, found[lang]) for lang in sorted(found)]
    seen: set[str] = set()
    for lang in langs:
        if lang in seen:
            raise CorpusError(f"--langs names '{lang}' twice")
        seen.add(lang)
        if lang not in found:
            raise CorpusError(
                f"{corpus / (lang + '.txt')}: no such file (nor .txt.gz / .txt.xz); "
                f"languages found: {', '.join(sorted(found)) or 'none'}"
            )
    return [LanguageFile(lang, found[lang]) for lang in langs]


def open_binary(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _where(path: Path, lineno: int, offset: int) -> str:
    return f"{path}:{lineno}" if not offset else f"{path}, line {lineno} after byte {offset}"


def _raw_lines(path: Path, offset: int) -> Iterator[bytes]:
    """The file's lines as bytes from byte `offset` on; a damaged compressed file is a
    CorpusError naming it and the line where reading stopped, never a bare EOFError or
    zlib error from deep inside a worker."""
    lineno = 0
    try:
        with open_binary(path) as f:
            if offset:
                f.seek(offset)
            for lineno, raw in enumerate(f, 1):
                yield raw
    except _DAMAGED as e:
        what = "truncated" if isinstance(e, EOFError) else "corrupt"
        raise CorpusError(
            f"{_where(path, lineno + 1, offset)}: {what} compressed file ({type(e).__name__}: {e}), "
            f"reading stopped at this line; copy or compress the file again"
        ) from None


def decoded_lines(path: Path, offset: int = 0) -> Iterator[tuple[bytes, Optional[str]]]:
    """(raw bytes, text) of each line from byte `offset` on; text is None where the
    line is not UTF-8, else the line without its ending, a stray carriage return made
    a space (the text files we hand to other tools are read with universal newlines,
    which would split a line there)."""
    for raw in _raw_lines(path, offset):
        try:
            text: Optional[str] = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw, None
            continue
        yield raw, text.rstrip("\n").rstrip("\r").replace("\r", " ")


def _check_compressed(path: Path) -> None:
    """Read a .gz or .xz file to its end: damaged bytes inside it first show as text that is
    not UTF-8, and only its checksum at the end tells a corrupt file from a bad line."""
    if path.name.endswith((".gz", ".xz")):
        for _ in _raw_lines(path, 0):
            pass


def iter_lines(path: Path, skip_invalid: bool = False, offset: int = 0) -> Iterator[Optional[str]]:
    """Decoded lines from byte `offset` on; None for a line skipped as invalid."""
    for lineno, (raw, text) in enumerate(decoded_lines(path, offset), 1):
        if text is None and not skip_invalid:
            _check_compressed(path)
            start = raw.decode("utf-8", errors="replace").find("\ufffd")
            raise CorpusError(
                f"{_where(path, lineno, offset)}: invalid UTF-8 at byte {start} of the line "
                f"({raw[max(0, start - 10):start + 10]!r}); fix the file or pass --skip-invalid"
            )
        yield text


def iter_documents(path: Path, skip_invalid: bool = False, offset: int = 0) -> Iterator[list[str]]:
    """Documents as lists of non-blank lines; blank lines separate documents."""
    doc: list[str] = []
    for line in iter_lines(path, skip_invalid, offset):
        if line is None:
            continue
        if line.strip():
            doc.append(line)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def scan(lf: LanguageFile, skip_invalid: bool = False) -> LanguageScan:
    """Validate a language file and count its documents and lines."""
    result = LanguageScan(lf.lang, lf.path)
    doc = 0
    for line in iter_lines(lf.path, skip_invalid):
        if line is None:
            result.skipped += 1
        elif line.strip():
            doc += 1
        elif doc:
            result.doc_lines.append(doc)
            doc = 0
    if doc:
        result.doc_lines.append(doc)
    result.documents = len(result.doc_lines)
    result.lines = sum(result.doc_lines)
    if result.documents == 0:
        raise CorpusError(f"{lf.path}: no text (the file is empty or blank)")
    return result


def valid_document_ids(lang: str, documents: int, valid_docs: int, seed: int) -> np.ndarray:
    """Which documents (by index) are held out for validation, sorted.

    At most a tenth of a language's documents (at least one) is held out, so a
    low-resource language keeps most of its text for training. The draw depends on
    the seed and the language only, so it is the same on every run and machine.
    """
    if documents < 2:
        raise CorpusError(
            f"language '{lang}' has {documents} document: at least 2 are needed to hold one out"
        )
    n_valid = min(valid_docs, max(1, documents // 10))
    rng = np.random.default_rng([seed, zlib.crc32(lang.encode())])
    return np.sort(rng.choice(documents, size=n_valid, replace=False))


def iter_split(
    path: Path, valid_ids: np.ndarray, skip_invalid: bool = False,
    first: int = 0, end: Optional[int] = None, offset: int = 0,
) -> Iterator[tuple[bool, list[str]]]:
    """(is_valid, document) for documents [first, end) in file order (all by default);
    document `first` starts at byte `offset` of the file."""
    valid = set(valid_ids.tolist())
    numbers = itertools.count(first) if end is None else range(first, end)
    for i, doc in zip(numbers, iter_documents(path, skip_invalid, offset)):
        yield i in valid, doc


def write_split_text(
    path: Path, valid_ids: np.ndarray, train_out: Path, valid_out: Path, skip_invalid: bool = False
) -> None:
    """The train and valid text exactly as the binarized shards hold it: each
    document's lines followed by one empty line. Used by the reference path of the
    tests and benchmarks (spm_encode + fairseq-preprocess)."""
    with open(train_out, "w", encoding="utf-8") as train, open(valid_out, "w", encoding="utf-8") as valid:
        for is_valid, doc in iter_split(path, valid_ids, skip_invalid):
            (valid if is_valid else train).write("\n".join(doc) + "\n\n")
