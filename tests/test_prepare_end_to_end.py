"""A real `xlmr-prepare` run over six languages of the shared corpus: fairseq loads
every shard, decoding gives the text back, the shards are byte-identical to the
stock spm_encode + fairseq-preprocess path, and stats.tsv adds up."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from xlmr.preprocess import binarize, corpus, prepare, vocabulary
from benchmarks import stock_prepare as reference
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities
from xlmr_plugin.storage import layout
from tests.conftest import LANGS, VOCAB_SIZE


def test_the_console_script_runs_and_prints_its_summary(tmp_path, corpus_dir):
    out = subprocess.run(
        [str(Path(sys.executable).parent / "xlmr-prepare"), str(corpus_dir), str(tmp_path / "d"), "--langs", "el,mk",
         "--vocab-size", "300", "--workers", "2"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "spm_lines" in out and "el" in out and "mk" in out and "done now" in out
    for lang in ("el", "mk"):
        blocks = {path.name for mode, tokens in binarize.BLOCK_MODES
                  for path in layout.block_files(Path("train"), mode, tokens)}
        assert {p.name for p in (tmp_path / "d" / lang).iterdir()} == {
            "train.bin", "train.idx", "valid.bin", "valid.idx", "stats.json", *blocks}


@pytest.mark.parametrize("lang", LANGS)
def test_fairseq_loads_every_shard_and_decoding_gives_the_text_back(xlmr_data, corpus_dir, lang):
    dictionary = Dictionary.load(str(xlmr_data / "dict.txt"))
    sp = spm.SentencePieceProcessor(model_file=str(xlmr_data / "spm.model"))
    source = corpus.discover(corpus_dir, [lang])[0]
    scan = corpus.scan(source)
    valid_ids = corpus.valid_document_ids(lang, scan.documents, 100, 1)
    expected = {"train": [], "valid": []}
    for is_valid, doc in corpus.iter_split(source.path, valid_ids):
        expected["valid" if is_valid else "train"] += doc + [""]
    for split, lines in expected.items():
        dataset = data_utils.load_indexed_dataset(str(xlmr_data / lang / split), dictionary)
        assert dataset is not None and len(dataset) == len(lines)
        for i in np.linspace(0, len(lines) - 1, 60).astype(int):
            item = dataset[int(i)].tolist()
            assert item[-1] == dictionary.eos()
            pieces = [dictionary[t] for t in item[:-1]]
            assert sp.decode_pieces(pieces) == sp.decode(sp.encode(lines[i]))
        if split == "valid":
            assert sum(d[-1] == dictionary.eos() and len(d) == 1 for d in dataset) == len(valid_ids)


@pytest.mark.parametrize("lang", ["el", "ja", "ru"])
def test_shards_are_byte_identical_to_spm_encode_and_fairseq_preprocess(xlmr_data, corpus_dir, tmp_path, lang):
    source = corpus.discover(corpus_dir, [lang])[0]
    valid_ids = corpus.valid_document_ids(lang, corpus.scan(source).documents, 100, 1)
    corpus.write_split_text(source.path, valid_ids, tmp_path / "train.txt", tmp_path / "valid.txt")
    reference.two_step(xlmr_data / "spm.model", xlmr_data / "dict.txt",
                       tmp_path / "train.txt", tmp_path / "valid.txt", tmp_path / "ref")
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
        assert (tmp_path / "ref" / name).read_bytes() == (xlmr_data / lang / name).read_bytes(), name


def test_pieces_holding_whitespace_are_split_as_fairseq_splits_them(tmp_path):
    """A model trained without normalization keeps tabs and line separators inside
    pieces, which fairseq's tokenizer splits on; characters outside the vocabulary,
    a carriage return and a paragraph far longer than a block come along."""
    docs = [f"word{i}\tvalue{i % 7} and\u2028more text\x1chere {i % 5}\n\U0001F600 ꙮ mixed\r inside\n" for i in range(40)]
    docs[7] = "very long paragraph " * 2000 + "\n"
    (tmp_path / "corpus").mkdir()
    source = tmp_path / "corpus" / "xx.txt"
    source.write_text("\n".join(docs), encoding="utf-8")
    (tmp_path / "spm-input.txt").write_text("\n".join(docs).replace("\r", " "), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "spm-input.txt"), model_prefix=str(tmp_path / "identity"), vocab_size=36, model_type="unigram",
        normalization_rule_name="identity", minloglevel=2, **vocabulary.XLMR_SPECIAL_IDS)
    model = tmp_path / "identity.model"
    layout.write_dictionary(model, np.ones(36, dtype=int), tmp_path / "dict.txt")
    dest = tmp_path / "dest"
    assert prepare.main([str(tmp_path / "corpus"), str(dest), "--spm-model", str(model),
                         "--dict", str(tmp_path / "dict.txt")]) == 0
    valid_ids = corpus.valid_document_ids("xx", len(docs), 100, 1)
    corpus.write_split_text(source, valid_ids, tmp_path / "train.txt", tmp_path / "valid.txt")
    reference.two_step(model, tmp_path / "dict.txt", tmp_path / "train.txt", tmp_path / "valid.txt", tmp_path / "ref")
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
        assert (tmp_path / "ref" / name).read_bytes() == (dest / "xx" / name).read_bytes(), name


def test_stats_tsv_has_a_row_per_language_that_adds_up(xlmr_data):
    with open(xlmr_data / "stats.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["lang"] for r in rows] == sorted(LANGS)
    en = next(r for r in rows if r["lang"] == "en")
    assert (int(en["documents"]), int(en["lines"])) == (2259, 73204)  # ../shared/corpus/mono/STATS.tsv
    train = np.array([int(r["train_tokens"]) for r in rows])
    assert all(int(r["tokens"]) == int(r["train_tokens"]) + int(r["valid_tokens"]) for r in rows)
    p = np.array([float(r["p"]) for r in rows])
    assert p == pytest.approx(train / train.sum(), abs=1e-6)
    q = np.array([float(r["q_alpha=0.3"]) for r in rows])
    assert q == pytest.approx(smoothed_probabilities(train, 0.3), abs=1e-6)
    el = next(i for i, r in enumerate(rows) if r["lang"] == "el")
    assert q[el] > 10 * p[el]  # the smallest language is sampled far above its share


def test_dictionary_has_xlmr_layout(xlmr_data):
    sp = spm.SentencePieceProcessor(model_file=str(xlmr_data / "spm.model"))
    dictionary = Dictionary.load(str(xlmr_data / "dict.txt"))
    assert sp.get_piece_size() == VOCAB_SIZE
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert dictionary.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert len(dictionary) == VOCAB_SIZE + 1  # + <mask>, appended by the task: 250,002 at 250k pieces
    assert all(dictionary.index(sp.id_to_piece(i)) == i + 1 for i in range(3, VOCAB_SIZE))
    counts = np.array(dictionary.count[4:])
    assert counts.sum() > 0 and counts[0] > counts[-1]  # real piece counts, frequent pieces first


def test_the_vocabulary_sample_gives_low_resource_languages_more_than_their_share(xlmr_data):
    import json
    record = json.loads((xlmr_data / "vocab.json").read_text())
    given = record["sentences"]
    assert sum(given.values()) == 40000
    # el has 158 of the six languages' 170,895 lines (0.09%); at alpha 0.3 it gives far more
    assert given["el"] > 0.01 * 40000
