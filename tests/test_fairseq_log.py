"""The one reader of fairseq-train's log, on the logs of real short runs: the json and simple
formats of fairseq-train and fairseq-hydra-train's form give the same records, and
`xlmr-train --status`, the study report and the demo's validation curves read them."""
import math
from pathlib import Path

import matplotlib.image
import pytest

from plugin_utils import PLUGIN, REPO, TINY, fairseq_cli, json_records, small_dest
from xlmr.analysis import valid_curves
from xlmr.analysis.run_results import read_run
from xlmr.slurm import fairseq_log, train_status
from xlmr_plugin.models.shapes import SHAPES
from xlmr_plugin.storage import layout

# 4 updates, validated and saved every 2: train_inner, valid, train records and saved checkpoints
RUN = ["--batch-size", "8", "--max-update", "4", "--validate-interval-updates", "2",
       "--save-interval-updates", "2", "--best-checkpoint-metric", "loss_lang_mean"]


@pytest.fixture(scope="module")
def data(xlmr_data, tmp_path_factory):
    return small_dest(xlmr_data, tmp_path_factory.mktemp("data"), {"el": None, "ja": 50})


def train(data, save_dir, log_format: str) -> list[str]:
    args = [data, *TINY, *RUN, "--log-format", log_format, "--save-dir", save_dir]
    return fairseq_cli("fairseq-train", args).splitlines()


@pytest.fixture(scope="module")
def json_run(data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("json")
    return train(data, save_dir, "json"), save_dir


@pytest.fixture(scope="module")
def simple_run(data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("simple")
    return train(data, save_dir, "simple"), save_dir


def test_json_records_have_the_logged_numbers_without_the_tag_prefix(json_run):
    lines, _ = json_run
    log = "\n".join(lines)
    inner = list(fairseq_log.records(lines, "train_inner"))
    assert [r.stats["num_updates"] for r in inner] == [1, 2, 3, 4]
    assert [r.stats for r in inner] == json_records(log, "train_inner")
    valid = list(fairseq_log.records(lines, "valid"))
    assert [r.stats["num_updates"] for r in valid] == [2, 4]
    assert [r.stats for r in valid] == [{k.replace("valid_", "", 1): v for k, v in raw.items()}
                                        for raw in json_records(log, "valid")]
    assert {"loss_el", "loss_ja", "loss_lang_mean"} <= set(valid[-1].stats)
    [epoch] = fairseq_log.records(lines, "train")
    assert epoch.stats["num_updates"] == 4 and epoch.stats["epoch"] == 1
    assert epoch.stats["loss"] == json_records(log, "train")[0]["train_loss"]


def test_checkpoints_model_size_and_data(json_run, data):
    lines, save_dir = json_run
    events = list(fairseq_log.events(lines))
    saved = [e for e in events if isinstance(e, fairseq_log.SavedCheckpoint)]
    assert [(s.epoch, s.updates) for s in saved] == [(1, 2), (1, 4)]
    assert [Path(s.path).parent for s in saved] == [save_dir, save_dir] and Path(saved[-1].path).exists()
    [size] = [e for e in events if isinstance(e, fairseq_log.ModelSize)]
    assert size.parameters == SHAPES["xlmr_tiny"].parameters(layout.dictionary_size(data))
    assert fairseq_log.TrainingData(str(data)) in events


def test_simple_format_gives_the_json_numbers(json_run, simple_run):
    json_lines, simple_lines = json_run[0], simple_run[0]
    for tag in ("train_inner", "valid", "train"):
        expected = list(fairseq_log.records(json_lines, tag))
        found = list(fairseq_log.records(simple_lines, tag))
        assert len(found) == len(expected) > 0
        for got, want in zip(found, expected):
            same = [k for k in want.stats if k.startswith("loss") or k in ("num_updates", "epoch", "lr")]
            assert {k: got.stats[k] for k in same} == {k: want.stats[k] for k in same}


def test_hydra_lines_are_read_as_fairseq_train_lines(data, tmp_path):
    log = fairseq_cli("fairseq-hydra-train", [
        "--config-dir", REPO / "config" / "pretraining", "--config-name", "base",
        f"task.data={data}", f"common.user_dir={PLUGIN}", "model._name=xlmr_tiny",
        "common.fp16=false", "common.cpu=true", "common.log_interval=1", "common.seed=3",
        "task.tokens_per_sample=64", "dataset.batch_size=8", "optimization.update_freq=[1]",
        "optimization.max_update=2", "dataset.validate_interval_updates=2",
        f"checkpoint.save_dir={tmp_path / 'ckpt'}", "checkpoint.save_interval_updates=2",
    ], cwd=tmp_path)
    lines = log.splitlines()
    assert any(line.startswith("[") and "][valid][INFO] - {" in line for line in lines)
    assert [r.stats["num_updates"] for r in fairseq_log.records(lines, "train_inner")] == [1, 2]
    [valid] = fairseq_log.records(lines, "valid")
    assert valid.stats == {k.replace("valid_", "", 1): v for k, v in json_records(log, "valid")[0].items()}


def test_status_and_report_read_the_same_run_in_both_formats(json_run, simple_run, tmp_path):
    results = []
    for name, (lines, _) in (("json", json_run), ("simple", simple_run)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        status = train_status.read_status(run_dir / "train.log")
        last = list(fairseq_log.records(lines, "train_inner"))[-1].stats
        assert (status.updates, status.loss, status.checkpoint_updates) == (4, last["loss"], 4)
        assert status.error is None
        results.append(read_run(run_dir))
    json_result, simple_result = results
    assert json_result.languages == simple_result.languages == ["el", "ja"]
    assert [simple_result.loss(lang) for lang in ("el", "ja")] == [json_result.loss(lang) for lang in ("el", "ja")]
    assert simple_result.parameters == json_result.parameters
    assert simple_result.valid["num_updates"] == json_result.valid["num_updates"] == 4


def _run_dir(tmp_path: Path, name: str, lines: list[str]) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run_dir


def test_valid_curves_draw_every_language_of_every_validation_in_both_formats(json_run, simple_run, data, tmp_path):
    drawn = {}
    for name, (lines, _) in (("json", json_run), ("simple", simple_run)):
        log = _run_dir(tmp_path, name, lines) / "train.log"
        curves = valid_curves.read_curves(log)
        assert (curves.run, curves.data) == (name, data)
        unigram = valid_curves.unigram_bits(curves.data, list(curves.losses))
        png = tmp_path / f"{name}.png"
        drawn[name] = valid_curves.plot_curves(curves, png, unigram)
        valid = list(fairseq_log.records(lines, "valid"))
        assert set(drawn[name]) == {"el", "ja", "mean over languages", "unigram"}
        for key, lang in (("el", "el"), ("ja", "ja"), ("mean over languages", "lang_mean")):
            assert drawn[name][key] == [(r.stats["num_updates"], r.stats[f"loss_{lang}"]) for r in valid]
        assert [u for u, _ in drawn[name]["el"]] == [2, 4]
        image = matplotlib.image.imread(png)  # a PNG matplotlib reads back, of the size drawn
        assert image.shape[:2] == (540, 840) and image.std() > 0
        assert not list(tmp_path.glob(f".{name}.png.tmp-*"))  # written in place, no temporary left
    assert drawn["json"] == drawn["simple"]
    # a unigram guess is worse than nothing on no language's real text: below the uniform log2|V|
    levels = valid_curves.unigram_bits(data, ["el", "ja"])
    assert set(levels) == {"el", "ja"}
    assert all(0 < bits < math.log2(layout.dictionary_size(data)) for bits in levels.values())


def test_valid_curves_command_prints_the_picture_and_refuses_a_log_without_validation(json_run, tmp_path, capsys):
    lines, _ = json_run
    log = _run_dir(tmp_path, "run", lines) / "train.log"
    assert valid_curves.main([str(log), "--out", str(tmp_path / "curves.png")]) == 0
    assert capsys.readouterr().out.strip() == f"validation curves: {tmp_path / 'curves.png'}"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    training_only = [line for line in lines if not any(fairseq_log.records([line], "valid"))]
    log = _run_dir(tmp_path, "no_valid", training_only) / "train.log"
    with pytest.raises(SystemExit):
        valid_curves.main([str(log), "--out", str(tmp_path / "none.png")])
    assert f"{log}: no validation record" in capsys.readouterr().err
    assert not (tmp_path / "none.png").exists()
