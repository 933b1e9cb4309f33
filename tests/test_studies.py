"""The paper's analyses end to end at toy scale: `xlmr-sweep --study NAME` trains the tiny
model for a few updates per grid point (real fairseq, real data of the session DEST),
then `xlmr-report` turns the runs into results.md, results.json and PNG figures."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xlmr.analysis.capacity import scaled_shape, shape_for_parameters
from xlmr_plugin.models.shapes import Shape
from xlmr.analysis.run_results import read_run
from conftest import LANGS
from plugin_utils import TINY, json_records, small_dest, write_stats

STEPS = ["--batch-size", "8", "--batch-size-valid", "32", "--max-update", "12", "--validate-interval-updates", "12",
         "--no-save"]
PNG = b"\x89PNG\r\n\x1a\n"


def tool(name: str, *argv) -> str:
    proc = subprocess.run([str(Path(sys.executable).with_name(name)), *map(str, argv)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def sweep(data, sweep_dir: Path, *study_args: str) -> dict:
    tool("xlmr-sweep", data, "--sweep-dir", sweep_dir, "--gpus-per-node", "0",
         *study_args, *TINY, *STEPS)
    report = json.loads((sweep_dir / "report" / "results.json").read_text())
    assert (sweep_dir / "report" / "results.md").read_text().startswith("## ")
    return report


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def last_valid(run_dir: Path) -> dict:
    return json_records((run_dir / "train.log").read_text(), "valid")[-1]


@pytest.fixture(scope="module")
def study_data(xlmr_data, tmp_path_factory) -> Path:
    """The session DEST cut to a few thousand lines a language (el whole: 150 lines), with a
    stats.tsv of the cut, as xlmr-prepare would write it, so that batching and validation take
    seconds; en, de hold more than a uniform share of tokens, el far less."""
    dest = small_dest(xlmr_data, tmp_path_factory.mktemp("study_data"),
                      {"en": 3000, "de": 2000, "fr": 800, "ru": 800, "ja": 800, "el": None}, valid_items=40)
    return write_stats(dest)


@pytest.fixture(scope="module")
def alpha_sweep(study_data, tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("alpha")
    sweep(study_data, sweep_dir, "--study", "alpha", "--study-values", "0.1", "1.0",
          "--tensorboard-logdir", sweep_dir / "tb")
    return sweep_dir


def test_alpha_study_reports_high_and_low_resource_perplexity(alpha_sweep, study_data):
    report = json.loads((alpha_sweep / "report" / "results.json").read_text())["alpha"]
    assert [row["x"] for row in report["runs"]] == [0.1, 1.0]
    assert report["figures"] == ["alpha.png"] and is_png(alpha_sweep / "report" / "alpha.png")
    stats = {line.split("\t")[0]: float(line.split("\t")[2])
             for line in (study_data / "stats.tsv").read_text().splitlines()[1:]}
    for row in report["runs"]:
        record = last_valid(alpha_sweep / row["run"])
        assert row["updates"] == 12 == record["valid_num_updates"]
        # high-resource: at least a uniform share of the six languages' tokens
        assert set(row["langs_high"]) == {lang for lang in LANGS if stats[lang] >= 1 / 6}
        assert "en" in row["langs_high"] and "el" in row["langs_low"]
        for group in ("high", "low"):
            mean_bits = sum(record[f"valid_loss_{lang}"] for lang in row[f"langs_{group}"]) / len(row[f"langs_{group}"])
            assert row[f"ppl_{group}"] == pytest.approx(2 ** mean_bits, rel=1e-9)
        mean_bits = sum(record[f"valid_loss_{lang}"] for lang in LANGS) / len(LANGS)
        assert row["ppl_all"] == pytest.approx(2 ** mean_bits, rel=1e-9)
        assert 10 < row["ppl_low"] < 4000 and 10 < row["ppl_high"] < 4000
    table = (alpha_sweep / "report" / "results.md").read_text()
    assert "| language | p_i (6 languages) |" in table and "| el |" in table


def test_tensorboard_event_files_hold_per_language_scalars(alpha_sweep):
    for run in ("alpha=0.1", "alpha=1.0"):
        events = EventAccumulator(str(alpha_sweep / "tb" / run / "valid"))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {f"loss_{lang}" for lang in LANGS} | {f"ppl_{lang}" for lang in LANGS} <= tags
        (point,) = events.Scalars("loss_el")
        assert point.step == 12
        assert point.value == pytest.approx(last_valid(alpha_sweep / run)["valid_loss_el"], abs=1e-3)
        inner = EventAccumulator(str(alpha_sweep / "tb" / run / "train_inner"))
        inner.Reload()
        assert len(inner.Scalars("loss")) == 12


def test_report_picks_up_downstream_fields(alpha_sweep, tmp_path):
    """A probe's `downstream_<name>` validation field, whatever its name, becomes a column and a figure."""
    runs = []
    for i, run in enumerate(("alpha=0.1", "alpha=1.0")):
        shutil.copytree(alpha_sweep / run, tmp_path / run)
        log = tmp_path / run / "train.log"
        record = {**last_valid(alpha_sweep / run), "valid_downstream_xnli_en": 40.0 + i, "valid_downstream_ner": 0.5}
        log.write_text(log.read_text() + f"2026-01-01 | INFO | valid | {json.dumps(record)}\n")
        runs.append(tmp_path / run)
    tool("xlmr-report", *runs, "--out", tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["alpha"]["runs"]
    assert [row["downstream_xnli_en"] for row in rows] == [40.0, 41.0]
    assert "downstream_ner" in (tmp_path / "out" / "results.md").read_text()
    assert is_png(tmp_path / "out" / "alpha_downstream.png")


def test_curse_and_capacity_studies(study_data, tmp_path):
    """Nested language sets around the same core, at fixed and at scaled width; one figure for both."""
    curse = sweep(study_data, tmp_path / "curse", "--study", "curse", "--study-values", "2", "4",
                  "--core-langs", "en,el")["curse"]
    capacity = sweep(study_data, tmp_path / "capacity", "--study", "capacity", "--study-values", "2", "4",
                     "--core-langs", "en,el")["capacity"]
    for rows, widths in ((curse["runs"], [64, 64]), (capacity["runs"], [64, 80])):
        assert [row["x"] for row in rows] == [2, 4] and [row["width"] for row in rows] == widths
        for row in rows:
            run = read_run(tmp_path / ("curse" if widths[1] == 64 else "capacity") / row["run"])
            assert set(run.meta["options"]["langs"].split(",")[:2]) == {"en", "el"}
            assert row["parameters"] == run.meta["parameters"]  # the formula, checked against fairseq's count
            assert row["ppl_core"] == pytest.approx(2 ** ((run.loss("en") + run.loss("el")) / 2), rel=1e-9)
    assert read_run(tmp_path / "capacity" / "langs=4").meta["options"]["encoder-attention-heads"] == "5"
    tool("xlmr-report", tmp_path / "curse" / "langs=2", tmp_path / "curse" / "langs=4",
         tmp_path / "capacity" / "langs=2", tmp_path / "capacity" / "langs=4", "--out", tmp_path / "both")
    both = json.loads((tmp_path / "both" / "results.json").read_text())
    assert both["curse"]["figures"] == both["capacity"]["figures"] == ["languages.png"]
    assert is_png(tmp_path / "both" / "languages.png")


def test_vocabulary_study_keeps_parameters_within_two_percent(corpus_dir, tmp_path):
    prepare = "--langs id,ro,el --spm-sample-lines 3000 --valid-docs 2 --workers 1"
    vocab = sweep(corpus_dir, tmp_path / "vocab", "--study", "vocab", "--study-values", "300", "900",
                  f"--prepare-options={prepare}")["vocab"]
    small, large = vocab["runs"]
    assert (small["x"], large["x"]) == (300, 900)
    # <s> <pad> </s> <unk>, the pieces from SentencePiece id 3 on, <mask>
    assert small["embeddings"] == 300 + 2 and large["embeddings"] == 900 + 2
    assert small["width"] == 64 and large["width"] < 64
    assert abs(large["parameters"] - small["parameters"]) <= 0.02 * small["parameters"]
    for row in (small, large):
        meta = read_run(tmp_path / "vocab" / row["run"]).meta
        assert row["parameters"] == meta["parameters"]  # fairseq's logged count equals the formula's
        assert 0.5 < row["bits_per_char"] < 10
    assert is_png(tmp_path / "vocab" / "report" / "vocab.png")


def test_width_for_constant_parameters_at_paper_scale():
    """xlmr_base's 278.3M parameters (README), and the widths of the paper's vocabulary ablation."""
    base = Shape(12, 768, 12, 3072)
    assert base.parameters(250_002) == 278_294_418
    assert [scaled_shape(base, step).width for step in range(3)] == [768, 960, 1152]
    target = base.parameters(32_005)
    for vocab in (64_005, 128_005, 256_005):
        shape = shape_for_parameters(base, vocab, target)
        assert shape.width % 12 == 0 and shape.width < 768
        assert math.isclose(shape.parameters(vocab), target, rel_tol=0.02)
    with pytest.raises(ValueError, match="no shape with 2000000 embeddings"):
        shape_for_parameters(base, 2_000_000, target)
