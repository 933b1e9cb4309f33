"""CoNLL-2002/2003 NER: the reader on the exact distributed formats, first-piece label
alignment on real words, entity scores of fixed predictions against hand counts, and
`xlmr-ner` end to end (real fairseq-train fine-tuning a tiny pretrained model on CPU)
on files in the official names and formats, with real sentences."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from conftest import CORPUS
from plugin_utils import json_records
from probe_utils import probe_model
from xlmr.downstream import ner_cli
from xlmr.downstream.conll import (
    Sentence, read_conll, read_predictions, scheme, to_iob2, write_predictions,
)
from xlmr.downstream.ner_binarize import label_dictionary, windows, write_token_classification
from xlmr_plugin.evaluation.ner_metrics import chunks, entity_scores
from xlmr.downstream.xnli import DataError

ENG = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER
"""
ESP = "Sao B-LOC\nPaulo I-LOC\n( O\nBrasil B-LOC\n) O\n\nLa O\nAgencia B-ORG\nEFE I-ORG\naño O\n"
DEU = "-DOCSTART- -X- -X- -X- O\n\nMünchen München NE I-NC I-LOC\nliegt liegen VVFIN I-VC O\n"


def test_conll2003_columns_docstart_and_iob1(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(ENG, encoding="utf-8")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [("EU", "rejects", "German", "call", "."), ("Peter", "Blackburn", "Smith")]
    assert sentences[1].tags == ("I-PER", "I-PER", "B-PER") and sentences[1].line == 9
    assert scheme(sentences) == "IOB1"
    assert to_iob2(sentences[1].tags) == ["B-PER", "I-PER", "B-PER"]
    deu = tmp_path / "deu.testb"
    deu.write_bytes(DEU.encode("latin-1"))  # word lemma POS chunk NER, latin-1
    assert read_conll(deu) == [Sentence(("München", "liegt"), ("I-LOC", "O"), 3)]


def test_conll2002_latin1_is_detected_or_named(tmp_path):
    path = tmp_path / "esp.testb"
    path.write_bytes(ESP.encode("latin-1"))
    sentences = read_conll(path)  # not UTF-8: read as latin-1
    assert sentences[1].words[-1] == "año" and scheme(sentences) == "IOB2"
    assert read_conll(path, "latin-1") == sentences
    with pytest.raises(DataError, match=f"{path}:10: not utf-8 .*--encoding latin-1"):
        read_conll(path, "utf-8")


@pytest.mark.parametrize("line, message", [
    ("EU", "one column 'EU'"),
    ("EU NNP I-NP E-ORG", "unknown tag 'E-ORG'"),
    ("EU NNP I-NP I_ORG", "unknown tag 'I_ORG'"),
])
def test_bad_lines_are_named_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "eng.testa"
    path.write_text(ENG.replace("EU NNP I-NP I-ORG", line), encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: {message}")):
        read_conll(path)


def test_iob2_conversion_keeps_conlleval_chunks():
    for tags in (["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"], ["B-MISC", "I-MISC", "O", "I-MISC"]):
        assert chunks(to_iob2(tags)) == chunks(tags)


def test_iob2_predictions_against_iob1_gold_by_hand(tmp_path):
    gold = Sentence(("Peter", "Blackburn", "Smith", "in", "Bonn"), ("I-PER", "I-PER", "B-PER", "O", "I-LOC"), 1)
    other = Sentence(("EU", "rejects"), ("I-ORG", "O"), 8)
    predicted = [["B-PER", "I-PER", "B-PER", "O", "B-ORG"], ["B-ORG", "B-MISC"]]
    path = tmp_path / "predictions" / "en.txt"
    write_predictions(path, [gold, other], ner_cli.regroup([["B-PER", "I-PER"], ["B-PER", "O", "B-ORG"],
                                                            ["B-ORG", "B-MISC"]], [gold, other]))
    assert path.read_text().splitlines()[:2] == ["Peter I-PER B-PER", "Blackburn I-PER I-PER"]
    gold_tags, tags = read_predictions(path)
    assert tags == predicted
    # gold PER(0,1) PER(2) LOC(4) | ORG(0); predicted PER(0,1) PER(2) ORG(4) | ORG(0) MISC(1)
    scores = entity_scores(gold_tags, tags)  # 3 correct, 5 predicted, 4 gold
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((60.0, 75.0, 200 / 3))
    assert scores["per_type"]["PER"]["f1"] == 100.0 and scores["per_type"]["MISC"]["precision"] == 0.0


def test_windows_cover_every_word_once():
    assert windows([2, 3, 1, 4, 1], 5) == [(0, 2), (2, 4), (4, 5)]
    assert windows([7, 1], 5) == [(0, 1), (1, 2)]  # a word longer than a window stays alone


def test_official_names_overrides_and_encodings(tmp_path):
    files = ner_cli.official_files(tmp_path, ["en.test=/data/test.txt"])
    assert files[("es", "dev")] == tmp_path / "esp.testa" and files[("de", "train")] == tmp_path / "deu.train"
    assert files[("en", "test")] == Path("/data/test.txt")
    with pytest.raises(ValueError, match="expected LANG.SPLIT=PATH"):
        ner_cli.official_files(tmp_path, ["en.testb=x"])
    assert ner_cli.encodings(["latin-1", "en=utf-8"]) == {"en": "utf-8", "de": "latin-1", "es": "latin-1", "nl": "latin-1"}
    assert ner_cli.plan("cross-lingual", ["de"]) == {"train": [("en", "train")], "valid": [("en", "dev")],
                                                    "test_de": [("de", "test")]}


def real_sentences(lang: str, n: int, skip: int = 0, latin1: bool = False) -> list:
    """Lines of the shared corpus with 6-30 words, as word lists."""
    found = []
    with open(CORPUS / f"{lang}.txt", encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if 6 <= len(words) <= 30 and (not latin1 or line.isascii() or _latin1(line)):
                found.append(words)
    return found[skip:skip + n]


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


def rule_tags(words: list, iob1: bool) -> list:
    """A learnable tagging: every word with a digit is a MISC entity, every other
    capitalized word after the first an ORG entity; IOB1 writes B- only where an entity
    follows one of the same type."""
    tags = []
    for i, word in enumerate(words):
        type_ = "MISC" if any(c.isdigit() for c in word) else "ORG" if i and word[:1].isupper() else ""
        adjacent = bool(tags) and tags[-1][2:] == type_
        tags.append("O" if not type_ else f"B-{type_}" if adjacent or not iob1 else f"I-{type_}")
    return tags


def test_first_piece_labels_on_real_words(xlmr_data, tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(xlmr_data / "spm.model"))
    sentences = [Sentence(tuple(w), tuple(rule_tags(w, iob1=True)), 1) for w in real_sentences("de", 12)]
    labels = label_dictionary(sentences)
    iob2 = {t for s in sentences for t in to_iob2(s.tags)}
    assert labels.symbols[labels.nspecial:] == ["O", *sorted(iob2 - {"O"})] and "B-ORG" in iob2
    out = tmp_path / "bin"
    stats = write_token_classification(sentences, xlmr_data / "spm.model", xlmr_data / "dict.txt", labels, out, "test", 16)
    assert stats.items > stats.sentences == 12  # some sentences have more than 16 pieces
    dictionary = Dictionary.load(str(out / "input0" / "dict.txt"))
    tokens = data_utils.load_indexed_dataset(str(out / "input0" / "test"), dictionary)
    tags = data_utils.load_indexed_dataset(str(out / "label" / "test"), labels)
    words, gold = iter(w for s in sentences for w in s.words), iter(t for s in sentences for t in to_iob2(s.tags))
    for item in range(len(tokens)):
        pieces = [dictionary[i] for i in tokens[item].tolist()]
        item_tags = tags[item].tolist()
        assert len(pieces) <= 17 and pieces[-1] == "</s>" and item_tags[-1] == labels.pad()
        firsts = [i for i, t in enumerate(item_tags) if t != labels.pad()]
        assert firsts[0] == 0
        for start, end in zip(firsts, firsts[1:] + [len(pieces) - 1]):
            word = next(words)
            assert pieces[start].startswith("▁")
            assert sp.decode_pieces(pieces[start:end]) == sp.decode(sp.encode(word))  # the word, as SentencePiece normalises it
            assert labels[item_tags[start]] == next(gold)
    assert next(words, None) is None


def write_conll(path, sentences, columns: int, iob1: bool, encoding: str):
    filler = {4: ["NN", "I-NP"], 5: ["lemma", "NN", "I-NC"], 3: ["NC"], 2: []}[columns]
    lines = ["-DOCSTART- " + " ".join(["-X-"] * (columns - 2)) + " O", ""] if columns >= 4 else []
    for words in sentences:
        lines += [" ".join([w, *filler, t]) for w, t in zip(words, rule_tags(words, iob1))] + [""]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


FORMATS = {"en": ("eng", 4, True, "utf-8"), "de": ("deu", 5, True, "latin-1"),
           "es": ("esp", 2, False, "latin-1"), "nl": ("ned", 3, False, "latin-1")}


@pytest.fixture(scope="module")
def conll_dir(tmp_path_factory):
    """eng/deu/esp/ned.{train,testa,testb}: the official names, columns, tag schemes and encodings."""
    root = tmp_path_factory.mktemp("conll")
    for lang, (prefix, columns, iob1, encoding) in FORMATS.items():
        for suffix, (n, skip) in {"train": (160, 0), "testa": (24, 160), "testb": (24, 184)}.items():
            write_conll(root / f"{prefix}.{suffix}", real_sentences(lang, n, skip, latin1=encoding == "latin-1"),
                        columns, iob1, encoding)
    return root


def test_cross_lingual_command_end_to_end(conll_dir, xlmr_data, tmp_path_factory, tmp_path):
    dest, ckpt = probe_model(xlmr_data, tmp_path_factory)
    out = tmp_path / "ner"
    assert ner_cli.main([
        str(ckpt), "--protocol", "cross-lingual", "--conll-dir", str(conll_dir), "--out", str(out),
        "--data-dir", str(dest), "--epochs", "6", "--batch-size", "16", "--lr", "2e-3",
        "--cpu", "--num-workers", "0", "--log-format", "json", "--log-interval", "5",
    ]) == 0
    log = (out / "checkpoints" / "train.log").read_text()
    assert f"Loaded checkpoint {ckpt}" in log
    valid = json_records(log, "valid")
    assert len(valid) == 6 and valid[0]["valid_f1"] < 10 and valid[-1]["valid_best_f1"] == max(r["valid_f1"] for r in valid)

    # the checkpoint kept is the one with the best dev F1, and that F1 is conlleval's on dev
    model, task = ner_cli.load_finetuned(out / "checkpoints" / "checkpoint_best.pt", out / "data")
    dev = read_conll(conll_dir / "eng.testa")
    dev_scores = entity_scores([s.tags for s in dev], ner_cli.regroup(task.predict_tags(model, "valid"), dev))
    assert dev_scores["f1"] == pytest.approx(valid[-1]["valid_best_f1"], abs=0.01)

    record = json.loads((out / "results.json").read_text())
    assert record["protocol"] == "cross-lingual" and record["train"] == str(conll_dir / "eng.train")
    for lang, (prefix, *_rest) in FORMATS.items():
        test = read_conll(conll_dir / f"{prefix}.testb")
        gold, predicted = read_predictions(out / "predictions" / f"{lang}.txt")
        assert gold == [list(s.tags) for s in test]  # the file's own tags, IOB1 or IOB2
        assert {t[2:] for tags in predicted for t in tags} <= {"", "ORG", "MISC"}
        scores = entity_scores(gold, predicted)
        assert record["scores"][lang] == pytest.approx({m: scores[m] for m in ("precision", "recall", "f1")})
    assert valid[-1]["valid_best_f1"] > 35 and record["scores"]["en"]["f1"] > 20  # the rule is learnt (0 at first)
    assert record["scores"]["avg"]["f1"] == pytest.approx(np.mean([record["scores"][lang]["f1"] for lang in FORMATS]))
    avg = record["scores"]["avg"]
    assert f"| avg | {avg['f1']:.1f} | {avg['precision']:.1f} | {avg['recall']:.1f} |" in (out / "results.md").read_text()


def test_all_languages_protocol_with_windows(xlmr_data, tmp_path_factory, tmp_path):
    """Training on the four training sets; sentences longer than 12 pieces are cut into
    windows in every split, and each test word still gets exactly one predicted tag."""
    dest, ckpt = probe_model(xlmr_data, tmp_path_factory)
    conll = tmp_path / "conll"
    conll.mkdir()
    for lang, (prefix, columns, iob1, encoding) in FORMATS.items():
        for suffix, skip in {"train": 0, "testa": 20, "testb": 30}.items():
            write_conll(conll / f"{prefix}.{suffix}", real_sentences(lang, 10 + 10 * (suffix == "train"), skip,
                                                                    latin1=encoding == "latin-1"), columns, iob1, encoding)
    out = tmp_path / "ner"
    assert ner_cli.main([
        str(ckpt), "--protocol", "all", "--conll-dir", str(conll), "--out", str(out), "--data-dir", str(dest),
        "--window", "12", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--cpu", "--num-workers", "0",
    ]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["train"].split() == [str(conll / f"{prefix}.train") for prefix, *_ in FORMATS.values()]
    assert (record["train sentences"], record["dev sentences"], record["window"]) == (80, 40, 12)
    assert record["train items"] > 80  # windows
    for lang, (prefix, *_rest) in FORMATS.items():
        test = read_conll(conll / f"{prefix}.testb")
        gold, predicted = read_predictions(out / "predictions" / f"{lang}.txt")
        assert gold == [list(s.tags) for s in test] and [len(p) for p in predicted] == [len(s.words) for s in test]
        scores = entity_scores(gold, predicted)
        assert record["scores"][lang] == pytest.approx({m: scores[m] for m in ("precision", "recall", "f1")})
