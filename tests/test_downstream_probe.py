"""Checkpoint selection by downstream score: the linear probe's maths, its data command, and
a real pretraining run that keeps the checkpoint with the best probe accuracy."""
import torch
import pytest

from plugin_utils import train_choosing_best_by_probe
from probe_utils import probe_model
from test_downstream_xnli_cli import LANGS, PAIRS, nli_data  # noqa: F401  (fixture)
from xlmr_plugin import XLMR
from xlmr.downstream import probe_data
from xlmr_plugin.evaluation.linear_probe import fit_and_score, load_probe_data, pair_features, probe_accuracy


def test_logistic_regression_separates_separable_classes_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 4
    y = torch.arange(300) % 3
    x = centers[y] + torch.randn(300, 16, generator=gen)
    assert fit_and_score(x[:150], y[:150], x[150:], y[150:], classes=3) == 100.0
    noise = torch.randn(300, 16, generator=gen)
    assert fit_and_score(noise[:150], y[:150], noise[150:], y[150:], classes=3) < 60.0


def test_pair_features_are_senteval_nli_features():
    u, v = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    assert pair_features([u, v]).tolist() == [[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]]
    assert pair_features([u]).tolist() == [[1.0, -2.0]]


@pytest.fixture(scope="module")
def probe_dir(nli_data, xlmr_data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("probe") / "xnli"
    assert probe_data.main([str(xlmr_data), "--out", str(out), "--mnli-dir", str(nli_data / "multinli_1.0"),
                            "--xnli-dir", str(nli_data / "XNLI-1.0"), "--langs", ",".join(LANGS),
                            "--train-pairs", "100", "--valid-pairs", "5"]) == 0
    return out


def test_probe_data_draws_the_same_pairs_in_every_language(probe_dir, xlmr_data, tmp_path_factory):
    dest, ckpt = probe_model(xlmr_data, tmp_path_factory)
    xlmr = XLMR.from_pretrained(ckpt.parent, ckpt.name, data_dir=dest)
    data = load_probe_data(str(probe_dir), xlmr.task.source_dictionary)
    assert len(data["train"].labels) == 2 * PAIRS  # all the English pairs there are
    assert len(data["valid"].labels) == 5 * len(LANGS)
    gold = data["valid"].labels.view(len(LANGS), 5)
    assert (gold == gold[0]).all()  # same pair indices, so the same labels, in each language
    first = probe_accuracy(xlmr.model, data, xlmr.task.source_dictionary.bos(), xlmr.task.source_dictionary.pad())
    assert first == probe_accuracy(xlmr.model, data, 0, 1)  # deterministic
    correct = first * len(data["valid"].labels) / 100
    assert 0.0 <= first <= 100.0 and correct == pytest.approx(round(correct), abs=1e-4)


def test_probe_data_refuses_another_dictionary(probe_dir, tmp_path):
    from fairseq.data import Dictionary

    other = Dictionary()
    for word in ("a", "b", "c"):
        other.add_symbol(word)
    with pytest.raises(ValueError, match="input0/dict.txt: not the model's dictionary"):
        load_probe_data(str(probe_dir), other)


def test_pretraining_keeps_the_checkpoint_with_the_best_probe_score(probe_dir, xlmr_data, tmp_path):
    valid = train_choosing_best_by_probe(xlmr_data, tmp_path, "xnli", probe_dir)
    scores = [r["valid_downstream_xnli"] for r in valid]
    assert all(0 <= s <= 100 for s in scores) and all(r["valid_downstream_seconds"] >= 0 for r in valid)
