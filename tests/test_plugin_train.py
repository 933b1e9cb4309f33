"""fairseq-train with the plugin, through the real CLI on data prepared by xlmr-prepare."""
import copy

import numpy as np
import pytest
import torch
from fairseq.models.roberta import XLMRModel

import xlmr_plugin  # noqa: F401  (checkpoint loading under torch >= 2.6)
from plugin_utils import PLUGIN, TINY, fairseq_cli, json_records, sampling_table, small_dest
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities

LANGS = ["de", "el", "en", "fr", "ja", "ru"]


@pytest.fixture(scope="module")
def six_langs(xlmr_data, tmp_path_factory):
    """All six prepared languages, 400 lines of each (el: all of its 150)."""
    return small_dest(xlmr_data, tmp_path_factory.mktemp("six"), {lang: 400 for lang in LANGS})


@pytest.fixture(scope="module")
def six_lang_run(six_langs, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("ckpt")
    log = fairseq_cli("fairseq-train", [
        six_langs, *TINY, "--batch-size", "16", "--max-update", "60",
        "--validate-interval-updates", "30", "--save-interval-updates", "30",
        "--best-checkpoint-metric", "loss_lang_mean", "--save-dir", save_dir,
    ])
    return log, save_dir


def test_loss_falls_and_each_language_is_validated(six_lang_run):
    log, _ = six_lang_run
    table = sampling_table(log)
    assert sorted(table) == LANGS
    tokens = [table[lang]["tokens"] for lang in LANGS]
    q = smoothed_probabilities(tokens, 0.3)
    assert [table[lang]["q"] for lang in LANGS] == pytest.approx(q, abs=1e-4)
    drawn = np.array([table[lang]["drawn"] for lang in LANGS])
    assert drawn / drawn.sum() == pytest.approx(q, abs=2e-3)
    assert sum(table[lang]["blocks"] for lang in LANGS) == pytest.approx(drawn.sum(), abs=len(LANGS))
    train = [r["loss"] for r in json_records(log, "train_inner")]
    assert len(train) == 60
    assert np.mean(train[-10:]) < np.mean(train[:10]) - 0.8, train
    valid = json_records(log, "valid")
    assert [r["valid_num_updates"] for r in valid] == [30, 60]
    for record in valid:
        per_lang = [record[f"valid_loss_{lang}"] for lang in LANGS]
        assert all(f"valid_ppl_{lang}" in record for lang in LANGS)
        assert record["valid_loss_lang_mean"] == pytest.approx(np.mean(per_lang), abs=2e-3)
    assert valid[1]["valid_loss"] < valid[0]["valid_loss"]
    assert valid[1]["valid_best_loss_lang_mean"] == min(r["valid_loss_lang_mean"] for r in valid)


def test_checkpoint_loads_in_stock_xlmr(six_lang_run, six_langs):
    _, save_dir = six_lang_run
    state = torch.load(save_dir / "checkpoint_best.pt")  # torch's default weights_only=True
    assert state["cfg"]["model"].arch == "xlmr_tiny"
    hub = XLMRModel.from_pretrained(
        str(save_dir), "checkpoint_best.pt", data_name_or_path=str(six_langs),
        user_dir=str(PLUGIN), sentencepiece_model=str(six_langs / "spm.model"),
    )
    hub.eval()
    predictions = hub.fill_mask("The <mask> of the city.", topk=3)
    assert len(predictions) == 3 and all(0 <= score <= 1 for _, score, _ in predictions)

    # the same weights in stock fairseq's XLMRModel class: same keys, same outputs
    stock = XLMRModel.build_model(copy.deepcopy(hub.cfg.model), hub.task).eval()
    stock.load_state_dict(hub.model.state_dict(), strict=True)
    tokens = hub.encode("Ein kleines Haus am See.").unsqueeze(0)
    with torch.no_grad():
        ours, _ = hub.model(tokens, features_only=True)
        theirs, _ = stock(tokens, features_only=True)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_resume_reproduces_uninterrupted_run(xlmr_data, tmp_path):
    # el, 120 lines of ja and a language of two short lines: ~20 updates an epoch
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None, "ja": 120, "xx": 2})
    args = [data, *TINY, "--max-tokens", "1024", "--disable-validation"]
    straight = fairseq_cli("fairseq-train", [*args, "--max-update", "30", "--save-dir", tmp_path / "a"])
    fairseq_cli("fairseq-train", [*args, "--max-update", "13", "--save-dir", tmp_path / "b"])
    resumed = fairseq_cli("fairseq-train", [*args, "--max-update", "30", "--save-dir", tmp_path / "b"])

    full = json_records(straight, "train_inner")
    tail = json_records(resumed, "train_inner")
    assert "Loaded checkpoint" in resumed and tail[0]["num_updates"] == 14
    assert full[-1]["epoch"] >= 2, "no epoch boundary: the per-epoch redraw is not exercised"
    assert [(r["loss"], r["lr"], r["gnorm"]) for r in full[13:]] == [(r["loss"], r["lr"], r["gnorm"]) for r in tail]
    assert "train: " in straight and "(epoch 2)" in straight  # the epoch reloaded, redrawn
    assert sampling_table(straight)["xx"]["blocks"] == 1  # fewer tokens than one block


def test_bf16_trains_without_tpu(xlmr_data, tmp_path):
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None})
    log = fairseq_cli("fairseq-train", [
        data, *TINY, "--batch-size", "8", "--max-update", "3", "--bf16",
        "--mask-whole-words", "--freq-weighted-replacement",
        "--optimizer", "fused_adamw", "--disable-validation", "--no-save", "--save-dir", tmp_path / "ckpt",
    ])
    assert "--bf16 without torch_xla" in log
    losses = [r["loss"] for r in json_records(log, "train_inner")]
    assert len(losses) == 3 and all(8 < loss < 12 for loss in losses)


def test_language_mean_counts_languages_absent_from_the_last_batch():
    """Two validation batches: a and b, then a alone. The mean is over both languages."""
    from fairseq.logging import metrics

    from xlmr_plugin.criterions.xlmr_masked_lm import LANG_LOSS, LANG_SIZE, XLMRMaskedLmLoss

    def batch(a_bits, a_size, b_bits, b_size):
        ln2 = np.log(2)
        return [{"loss": (a_bits * a_size + b_bits * b_size) * ln2, "ntokens": 10, "nsentences": 2,
                 "sample_size": a_size + b_size, LANG_LOSS + "a": a_bits * a_size * ln2, LANG_SIZE + "a": a_size,
                 LANG_LOSS + "b": b_bits * b_size * ln2, LANG_SIZE + "b": b_size}]

    with metrics.aggregate(new_root=True) as agg:
        XLMRMaskedLmLoss.reduce_metrics(batch(2.0, 2, 4.0, 3))
        XLMRMaskedLmLoss.reduce_metrics(batch(4.0, 2, 0.0, 0))
        stats = agg.get_smoothed_values()
    assert stats["loss_a"] == pytest.approx(3.0) and stats["loss_b"] == pytest.approx(4.0)
    assert stats["loss_lang_mean"] == pytest.approx(3.5)
