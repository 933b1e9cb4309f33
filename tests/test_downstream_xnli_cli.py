"""`xlmr-xnli`, each protocol end to end: files in the distributed XNLI / XNLI-MT / MultiNLI
formats with real sentences, the real fairseq-train fine-tuning a tiny pretrained model on
CPU, predictions, and the accuracy table recomputed from the saved predictions."""
import json

import pytest

from probe_utils import probe_model
from test_downstream_xnli import XNLI_HEADER, real_lines, xnli_row
from xlmr.downstream import xnli_cli
from xlmr.downstream.results import with_average
from xlmr.downstream.xnli import LABELS

LANGS = ["en", "de", "fr"]
PAIRS = 9  # per language and split: three of each label


def _pairs(lang: str, offset: int) -> list:
    lines = real_lines(lang, offset + 2 * PAIRS)[offset:]
    return [(LABELS[i % 3], lines[2 * i], lines[2 * i + 1]) for i in range(PAIRS)]


@pytest.fixture(scope="module")
def nli_data(tmp_path_factory):
    """XNLI-1.0, XNLI-MT-1.0 and multinli_1.0 folders as downloaded, small."""
    root = tmp_path_factory.mktemp("nli")
    (root / "XNLI-1.0").mkdir()
    for split, offset in (("dev", 0), ("test", 2 * PAIRS)):
        rows = [xnli_row(lang, *pair) for lang in LANGS for pair in _pairs(lang, offset)]
        (root / "XNLI-1.0" / f"xnli.{split}.tsv").write_text(
            "\n".join("\t".join(r) for r in [XNLI_HEADER, *rows]) + "\n", encoding="utf-8")
    (root / "multinli_1.0").mkdir()
    en = _pairs("en", 4 * PAIRS) + _pairs("en", 6 * PAIRS)
    (root / "multinli_1.0" / "multinli_1.0_train.jsonl").write_text("".join(
        json.dumps({"gold_label": label, "sentence1": s1, "sentence2": s2, "genre": "fiction"}) + "\n"
        for label, s1, s2 in en), encoding="utf-8")
    mt = root / "XNLI-MT-1.0"
    (mt / "multinli").mkdir(parents=True)
    (mt / "xnli").mkdir()
    for lang in LANGS[1:]:
        rows = [("contradictory" if label == "contradiction" else label, s1, s2) for label, s1, s2 in _pairs(lang, 4 * PAIRS)]
        (mt / "multinli" / f"multinli.train.{lang}.tsv").write_text(
            "premise\thypo\tlabel\n" + "".join(f"{s1}\t{s2}\t{label}\n" for label, s1, s2 in rows), encoding="utf-8")
        # translate-test: the language's test pairs "translated" into English
        translated = [(label, s1, s2) for (label, _, _), (_, s1, s2) in zip(_pairs(lang, 2 * PAIRS), _pairs("en", 8 * PAIRS))]
        (mt / "xnli" / f"xnli.test.{lang}.tsv").write_text(
            "premise\thypo\tlabel\n" + "".join(f"{s1}\t{s2}\t{label}\n" for label, s1, s2 in translated), encoding="utf-8")
    return root


@pytest.mark.parametrize("protocol", xnli_cli.PROTOCOLS)
def test_protocol_fine_tunes_and_scores_every_language(protocol, nli_data, xlmr_data, tmp_path_factory, tmp_path):
    dest, ckpt = probe_model(xlmr_data, tmp_path_factory)
    out = tmp_path / protocol
    argv = [
        str(ckpt), "--protocol", protocol, "--out", str(out), "--data-dir", str(dest),
        "--xnli-dir", str(nli_data / "XNLI-1.0"), "--mnli-dir", str(nli_data / "multinli_1.0"),
        "--xnli-mt-dir", str(nli_data / "XNLI-MT-1.0"), "--langs", ",".join(LANGS),
        "--epochs", "2", "--batch-size", "6", "--lr", "1e-4",
        "--cpu", "--num-workers", "0", "--max-positions", "512",
    ]
    assert xnli_cli.main(argv) == 0
    log = (out / "checkpoints" / "train.log").read_text()
    assert f"Loaded checkpoint {ckpt}" in log  # fine-tuning started from the pretrained weights
    if protocol == "cross-lingual":  # a rerun resumes the fine-tuning, it does not start over
        assert xnli_cli.main(argv) == 0
        rerun = (out / "checkpoints" / "train.log").read_text()[len(log):]
        assert f"Loaded checkpoint {out / 'checkpoints' / 'checkpoint_last.pt'}" in rerun
    expected_train = {"cross-lingual": 2 * PAIRS, "translate-test": 2 * PAIRS, "translate-train-all": 4 * PAIRS}
    record = json.loads((out / "results.json").read_text())
    assert record["training pairs"] == expected_train[protocol]
    assert record["dev pairs"] == (PAIRS if protocol == "translate-test" else len(LANGS) * PAIRS)

    # the table is the accuracy of the saved predictions against the gold labels
    test_file = nli_data / "XNLI-1.0" / "xnli.test.tsv"
    gold = {lang: [row.split("\t")[1] for row in test_file.read_text().splitlines()[1:] if row.startswith(lang + "\t")]
            for lang in LANGS}
    scores = {}
    for lang in LANGS:
        predicted = (out / "predictions" / f"{lang}.txt").read_text().split()
        assert len(predicted) == PAIRS and set(predicted) <= set(LABELS)
        scores[lang] = {"accuracy": 100.0 * sum(p == g for p, g in zip(predicted, gold[lang])) / PAIRS}
    expected = with_average(scores)
    assert {lang: row["accuracy"] for lang, row in record["scores"].items()} == pytest.approx(
        {lang: row["accuracy"] for lang, row in expected.items()})
    table = (out / "results.md").read_text()
    assert f"| avg | {expected['avg']['accuracy']:.1f} |" in table


def test_translate_protocols_need_the_translations(nli_data, tmp_path):
    with pytest.raises(SystemExit):
        xnli_cli.main(["model.pt", "--protocol", "translate-test", "--out", str(tmp_path),
                       "--xnli-dir", str(nli_data / "XNLI-1.0"), "--mnli-dir", str(nli_data / "multinli_1.0")])


def test_average_row_is_the_mean_of_the_languages():
    rows = with_average({"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}, "sw": {"accuracy": 60.5}})
    assert rows["avg"] == {"accuracy": pytest.approx(70.1666667)}
