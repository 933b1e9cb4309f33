"""The folder of a cross-lingual yardstick: English sentences, their translations, a label.

The pairs are text, not token ids: each model encodes them with its own SentencePiece
model and dictionary when it is scored, so one folder serves every vocabulary and a
folder can never be read with the wrong one. ``xlmr-probe-data --kind gettext`` writes
it; the marker file says what the folder is, so ``--downstream-probe NAME:DIR`` needs no
kind in its spec::

    DIR/crosslingual.json          the marker: languages, domains, how it was built
    DIR/retrieval/<lang>.tsv       domain <TAB> English <TAB> translation, one pair per line
    DIR/transfer/train.tsv         domain <TAB> English <TAB> English: the classifier's training set
    DIR/transfer/<lang>.tsv        domain <TAB> English <TAB> translation: its test set ("en" too;
                                   a language short of a domain's sentences has none)

Every text is one line of whitespace-normalised text (no tab, no newline). The label
of a sentence is its domain (which package's catalogue it comes from); a domain's index
in the marker's ``domains`` is the class index.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

MARKER = "crosslingual.json"
KIND = "crosslingual_yardstick"
VERSION = 1
ENGLISH = "en"
RETRIEVAL, TRANSFER, TRAIN = "retrieval", "transfer", "train"
SUFFIX = ".tsv"


class Pair(NamedTuple):
    domain: str
    english: str
    translation: str


@dataclass
class CrosslingualSet:
    """What the two measures read: retrieval pairs and transfer sets per language."""

    languages: List[str]  # the translated languages, English excluded, in the marker's order
    domains: List[str]  # the transfer classifier's classes, in class-index order
    retrieval: Dict[str, List[Pair]]  # per language
    transfer_train: List[Pair]  # English sentences (translation == English)
    transfer_test: Dict[str, List[Pair]]  # English first, then the languages with every domain
    meta: Dict[str, Any]


def is_crosslingual_set(directory: Path) -> bool:
    return (Path(directory) / MARKER).is_file()


def write_crosslingual_set(out: Path, data: CrosslingualSet) -> None:
    """Write ``data`` under ``out`` (a fresh staging folder), the marker last."""
    out = Path(out)
    files = {(RETRIEVAL, lang): pairs for lang, pairs in data.retrieval.items()}
    files.update({(TRANSFER, lang): pairs for lang, pairs in data.transfer_test.items()})
    files[(TRANSFER, TRAIN)] = data.transfer_train
    for (folder, name), pairs in files.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        lines = []
        for pair in pairs:
            if any(("\t" in text or "\n" in text) for text in pair):
                raise ValueError(f"{folder}/{name}: a tab or newline inside {pair!r}")
            lines.append("\t".join(pair) + "\n")
        (out / folder / f"{name}{SUFFIX}").write_text("".join(lines), encoding="utf-8")
    meta = dict(data.meta, kind=KIND, version=VERSION, languages=data.languages, domains=data.domains,
                transfer_languages=[lang for lang in data.transfer_test if lang != ENGLISH])
    (out / MARKER).write_text(json.dumps(meta, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def load_crosslingual_set(directory: Path) -> CrosslingualSet:
    """Read a folder written by ``write_crosslingual_set``; a missing file is named."""
    directory = Path(directory)
    marker = directory / MARKER
    meta = json.loads(marker.read_text(encoding="utf-8"))
    if meta.get("kind") != KIND or meta.get("version") != VERSION:
        raise ValueError(f"{marker}: not a {KIND} folder of version {VERSION} "
                         f"(kind {meta.get('kind')!r}, version {meta.get('version')!r})")
    languages, domains = list(meta["languages"]), list(meta["domains"])
    names = [TRAIN, ENGLISH, *meta["transfer_languages"]]
    transfer = {name: _read(directory / TRANSFER / f"{name}{SUFFIX}") for name in names}
    for name, pairs in transfer.items():
        unknown = sorted({p.domain for p in pairs} - set(domains))
        if unknown:
            raise ValueError(f"{directory / TRANSFER / name}{SUFFIX}: domains {unknown} are not in {marker}")
    return CrosslingualSet(
        languages=languages,
        domains=domains,
        retrieval={lang: _read(directory / RETRIEVAL / f"{lang}{SUFFIX}") for lang in languages},
        transfer_train=transfer.pop(TRAIN),
        transfer_test=transfer,
        meta=meta,
    )


def _read(path: Path) -> List[Pair]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the cross-lingual set (rebuild it with xlmr-probe-data)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: {len(fields)} tab-separated fields, expected 3")
        pairs.append(Pair(*fields))
    return pairs
