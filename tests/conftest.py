"""Shared fixtures: the real corpus in ../shared/corpus/mono and data prepared from it."""
from __future__ import annotations

from pathlib import Path

import pytest

from xlmr.preprocess import prepare

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "mono"
# Six languages, four scripts, from the largest (en) to one of five documents (el).
LANGS = ["en", "de", "fr", "ru", "ja", "el"]
VOCAB_SIZE = 2000


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing: {CORPUS}")
    return CORPUS


def prepare_args(corpus: Path, dest: Path, *extra: str) -> list[str]:
    """xlmr-prepare arguments that keep SentencePiece training to seconds."""
    return [str(corpus), str(dest), "--vocab-size", str(VOCAB_SIZE), "--spm-sample-lines", "40000", *extra]


@pytest.fixture(scope="session")
def xlmr_data(tmp_path_factory, corpus_dir) -> Path:
    """DEST prepared by xlmr-prepare from six languages of the shared corpus."""
    dest = tmp_path_factory.mktemp("xlmr_data")
    assert prepare.main(prepare_args(corpus_dir, dest, "--langs", ",".join(LANGS))) == 0
    return dest
