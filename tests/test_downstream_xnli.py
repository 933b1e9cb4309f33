"""XNLI / MultiNLI files in their distributed formats, with real sentences, read and
binarized into the layout fairseq's own sentence_prediction task loads."""
import json

import pytest
import sentencepiece as spm
import torch

from tests.conftest import CORPUS
from xlmr.downstream.xnli import DataError, read_multinli, read_xnli, read_xnli_mt, write_sentence_prediction

XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
               "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre",
               "label1", "label2", "label3", "label4", "label5"]


def real_lines(lang: str, n: int) -> list:
    with open(CORPUS / f"{lang}.txt", encoding="utf-8") as f:
        return [line.strip()[:200] for line in f if 20 < len(line.strip())][:n]


def xnli_row(lang, label, s1, s2):
    return [lang, label, "( x )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, "1", "2", "fiction",
            label, label, label, label, label]


@pytest.fixture
def xnli_file(tmp_path):
    de, fr = real_lines("de", 4), real_lines("fr", 4)
    rows = [xnli_row("de", "entailment", de[0], de[1]), xnli_row("fr", "neutral", fr[0], '"quoted" ' + fr[1]),
            xnli_row("de", "contradiction", de[2], de[3])]
    path = tmp_path / "xnli.test.tsv"
    path.write_text("\n".join("\t".join(r) for r in [XNLI_HEADER, *rows]) + "\n", encoding="utf-8")
    return path, de, fr


def test_read_xnli_groups_pairs_by_language_and_keeps_quotes(xnli_file):
    path, de, fr = xnli_file
    pairs = read_xnli(path)
    assert sorted(pairs) == ["de", "fr"]
    assert [(p.premise, p.label) for p in pairs["de"]] == [(de[0], "entailment"), (de[2], "contradiction")]
    assert pairs["fr"][0].hypothesis == '"quoted" ' + fr[1]


def test_xnli_mt_spells_contradiction_contradictory(tmp_path):
    es = real_lines("es", 2)
    path = tmp_path / "multinli.train.es.tsv"
    path.write_text(f"premise\thypo\tlabel\n{es[0]}\t{es[1]}\tcontradictory\n", encoding="utf-8")
    assert [p.label for p in read_xnli_mt(path)] == ["contradiction"]


def test_multinli_drops_pairs_without_gold_label(tmp_path):
    en = real_lines("en", 4)
    path = tmp_path / "multinli_1.0_train.jsonl"
    records = [{"gold_label": "neutral", "sentence1": en[0], "sentence2": en[1]},
               {"gold_label": "-", "sentence1": en[2], "sentence2": en[3]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert [(p.premise, p.label) for p in read_multinli(path)] == [(en[0], "neutral")]


def test_bad_files_are_named_with_their_line(tmp_path, xnli_file):
    path, _, _ = xnli_file
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("neutral", "maybe", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:3: unknown label 'maybe'"):
        read_xnli(path)
    bad = tmp_path / "multinli.train.de.tsv"
    bad.write_text("premise\tlabel\nx\tneutral\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{bad}:1: no column hypo"):
        read_xnli_mt(bad)


def test_binarized_pairs_load_in_fairseqs_sentence_prediction_task(xnli_file, xlmr_data, tmp_path):
    from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask
    path, de, _ = xnli_file
    pairs = read_xnli(path)["de"]
    out = tmp_path / "xnli-bin"
    write_sentence_prediction(pairs, xlmr_data / "spm.model", xlmr_data / "dict.txt", out, "test")
    task = SentencePredictionTask.setup_task(
        SentencePredictionConfig(data=str(out), num_classes=3, init_token=0, separator_token=2, seed=1, regression_target=False,
                                 max_positions=512))
    task.load_dataset("test")
    dataset = task.datasets["test"]
    sp = spm.SentencePieceProcessor(model_file=str(xlmr_data / "spm.model"))
    dictionary = task.source_dictionary
    for i, pair in enumerate(pairs):
        item = dataset[i]
        tokens = item["net_input.src_tokens"].tolist()
        assert tokens[0] == 0 and tokens[-1] == 2
        sep = tokens.index(2)
        assert tokens[sep + 1] == 2  # <s> premise </s> </s> hypothesis </s>
        premise = sp.decode_pieces([dictionary[t] for t in tokens[1:sep]])
        hypothesis = sp.decode_pieces([dictionary[t] for t in tokens[sep + 2:-1]])
        assert (premise, hypothesis) == (sp.decode(sp.encode(pair.premise)), sp.decode(sp.encode(pair.hypothesis)))
        assert item["target"].item() == ["contradiction", "entailment", "neutral"].index(pair.label)
    assert torch.is_tensor(dataset[0]["target"])
