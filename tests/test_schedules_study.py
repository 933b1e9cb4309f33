"""`xlmr-sweep --study schedules`: the XLM-R recipe against each schedule at equal compute.

The plan is checked on its options (every change point a share of the same N; N calibrated by
a real run to fit --minutes); then every schedule trains for real, one seed, a few updates of
the tiny model on real data, is scored by xlmr-eval-ppl and xlmr-yardstick inside its job,
and xlmr-report turns the runs into the table, the winner and the figure."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xlmr.analysis import schedules_study, studies
from xlmr.downstream import probe_data
from xlmr.slurm import arguments, train
from plugin_utils import TINY, json_records, small_dest, write_stats, sampling_tables
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

UPDATES = 30
# a fifth of el's 158 lines is below a uniform share of even a 20-update run's budget
STEPS = ["--batch-size", "8", "--batch-size-valid", "32", "--unimax-max-epochs", "0.2"]


@pytest.fixture(scope="module")
def data(xlmr_data, tmp_path_factory) -> Path:
    """The session DEST cut to a few hundred lines a language but en and el, whole, with its stats.tsv:
    UniMax's cap binds for el and never for en, whatever N the calibration finds."""
    dest = small_dest(xlmr_data, tmp_path_factory.mktemp("schedules_data"),
                      {"en": None, "de": 1000, "fr": 300, "ru": 300, "ja": 300, "el": None}, valid_items=20)
    return write_stats(dest)


@pytest.fixture(scope="module")
def gettext_set(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("schedules_probe") / "gettext"
    assert probe_data.main([str(data), "--kind", "gettext", "--out", str(out), "--max-pairs", "40"]) == 0
    return out


def plan(data: Path, sweep_dir: Path, *argv: str) -> tuple[argparse.Namespace, list[studies.StudyRun]]:
    """The study's runs as xlmr-sweep would plan them, parsed by the same options."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--sweep-dir", type=Path)
    train.add_training_arguments(parser)
    studies.add_arguments(parser)
    args, extra = parser.parse_known_args([str(data), "--sweep-dir", str(sweep_dir), "--gpus-per-node", "0",
                                           "--study", "schedules", *TINY, *STEPS, *argv])
    return args, studies.study_runs(args, extra)


def test_every_schedule_moves_at_shares_of_the_same_calibrated_n(data, gettext_set, tmp_path):
    args, runs = plan(data, tmp_path, "--minutes", "0.1", "--calibration-updates", "12", "--seeds", "1", "2",
                      "--yardstick-set", str(gettext_set))
    calibration = json.loads((tmp_path / "calibration" / "calibration.json").read_text())
    n = calibration["updates"]
    assert n == int(calibration["updates_per_s"] * 6) and calibration["threads"] == 1 and n >= 20
    # the calibration trained at the highest masking rate any run uses
    assert arguments.flag_value(calibration["fairseq_train"], "--mask-prob") == "0.3"
    assert [r.name for r in runs] == [f"{c},seed={s}" for c in schedules_study.CONFIGS for s in (1, 2)]
    assert args.cpus_per_task == 1 and all(r.threads == 1 for r in runs)
    options = {r.name: dict(r.options) for r in runs}
    for name, o in options.items():
        assert o["max-update"] == o["total-num-update"] == str(n)
        assert o["warmup-updates"] == str(round(0.05 * n)) and o["seed"] == name[-1]
        assert float(o["stop-time-hours"]) == pytest.approx(1.25 * 0.1 / 60, rel=1e-5)
        assert int(o["epoch-blocks"]) == 8 * max(1, round(n / 50))
    half, four_fifths = round(0.5 * n), round(0.8 * n)
    xlmr = options["xlmr,seed=1"]
    assert (xlmr["multilang-sampling-alpha"], xlmr["mask-prob"], xlmr["lr-scheduler"]) == ("0.3", "0.15", "polynomial_decay")
    assert options["alpha_anneal,seed=1"]["multilang-sampling-alpha"] == f"0:0.7,{half}:0.5,{four_fifths}:0.3"
    assert options["mask_anneal,seed=2"]["mask-prob"] == f"0:0.3,{half}:0.15"
    wsd = options["wsd,seed=1"]
    assert (wsd["lr-scheduler"], wsd["decay-fraction"], wsd["decay-shape"]) == ("warmup_stable_decay", "0.2", "1-sqrt")
    everything = options["all,seed=1"]
    assert all(everything[k] == options[c][k] for c, k in (("alpha_anneal,seed=1", "multilang-sampling-alpha"),
                                                           ("mask_anneal,seed=1", "mask-prob"), ("wsd,seed=1", "decay-shape")))
    assert options["unimax,seed=1"]["language-sampling"] == "unimax"
    # the budget is N x 8 blocks x 64 tokens; the cap binds for el, never for en
    assert runs[0].meta["budget_tokens"] == n * 8 * 64
    assert "el" in runs[0].meta["unimax_capped"] and "en" not in runs[0].meta["unimax_capped"]
    assert runs[0].after[0][-1] == str(tmp_path / "xlmr,seed=1" / "eval_ppl.json")


def test_bad_plans_stop_before_any_run(data, gettext_set, tmp_path):
    base = ["--max-update", "40", "--yardstick-set", str(gettext_set)]
    for argv, message in ((["--study-values", "xlmr", "cosine"], "unknown schedules cosine"),
                          (["--cpus-per-task", "2"], "--cpus-per-task 2"),
                          (["--no-save"], "no --no-save"),
                          (["--unimax-max-epochs", "1000"], "binds for 0 of 6 languages")):
        with pytest.raises(ValueError, match=message):
            plan(data, tmp_path, *base, *argv)
    with pytest.raises(ValueError, match="give --minutes M"):
        parser_args = [a for a in base if a not in ("--max-update", "40")]
        plan(data, tmp_path, *parser_args)


def test_study_end_to_end_every_schedule_trained_scored_and_reported(slurm_cluster, data, gettext_set, tmp_path):
    """On SLURM as the full study: one-CPU jobs, two at a time on the test node."""
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run([str(Path(sys.executable).with_name("xlmr-sweep")), str(data), "--sweep-dir", str(sweep_dir),
                           "--gpus-per-node", "0", "--executor", "slurm", "--wait", "--mem-gb", "2", "--time", "10",
                           "--study", "schedules", "--seeds", "1", "--max-update", str(UPDATES),
                           "--yardstick-set", str(gettext_set), *TINY, *STEPS, "--log-interval", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads((sweep_dir / "report" / "results.json").read_text())["schedules"]
    assert list(report["configs"]) == list(schedules_study.CONFIGS)
    rows = {row["config"]: row for row in report["runs"]}
    for config, row in rows.items():
        run_dir = sweep_dir / f"{config},seed=1"
        assert row["updates"] == row["planned_updates"] == UPDATES and row["threads"] == 1 and row["cpu_s"] > 0
        (usage,) = json.loads((run_dir / "usage.json").read_text())
        assert usage["cpus_per_task"] == "1" and usage["job_id"]  # a SLURM job of one CPU
        scores = json.loads((run_dir / "eval_ppl.json").read_text())
        assert row["bits_all"] == pytest.approx(sum(s["loss"] for k, s in scores.items() if k != "all") / 6)
        assert row["bits_low"] == pytest.approx(sum(scores[k]["loss"] for k in row["langs_low"]) / len(row["langs_low"]))
        assert "el" in row["langs_low"] and "en" in row["langs_high"] and 1 < row["bits_all"] < 14
        assert 0 <= row["retrieval"] <= 100 and 0 <= row["transfer"] <= 100
    assert len({(r["retrieval_floor"], r["transfer_floor"]) for r in rows.values()}) == 1  # one floor for all
    # the schedules moved where they were put: α and masking at epoch starts, the lr at every update
    log = {c: (sweep_dir / f"{c},seed=1" / "train.log").read_text() for c in rows}
    alphas = [(t["update"], float(t["rule"].removeprefix("alpha="))) for t in sampling_tables(log["alpha_anneal"])]
    assert alphas[0] == (0, 0.7) and [a for u, a in alphas if u >= 24] == [0.3]  # 0.8 N = update 24
    assert [a for _, a in alphas] == sorted((a for _, a in alphas), reverse=True)
    for config in ("mask_anneal", "all"):
        rates = [(int(u), float(r)) for r, u in re.findall(r"mask rate ([\d.]+), from update (\d+)", log[config])]
        assert rates[0] == (0, 0.3) and {r for u, r in rates if u >= 15} == {0.15}  # N / 2 = update 15
    assert "unimax=0.2 epochs" in log["unimax"]
    lr = {c: {int(r["num_updates"]): r["lr"] for r in json_records(log[c], "train_inner")}
          for c in ("xlmr", "wsd")}
    assert lr["wsd"][20] == lr["wsd"][8] > lr["xlmr"][20]  # stable until the last fifth, against linear decay
    best = report["winner"]
    ranked = sorted(report["configs"], key=lambda c: report["configs"][c]["bits_all"]["mean"])
    assert best["config"] == ranked[0]
    if best["config"] != "xlmr":
        assert best["xlmr"]["margin"] == pytest.approx(
            report["configs"]["xlmr"]["bits_all"]["mean"] - report["configs"][ranked[0]]["bits_all"]["mean"])
    table = (sweep_dir / "report" / "results.md").read_text()
    assert table.startswith("## schedules") and f"**{best['config']}**" in table and "| all,seed=1 | 30 / 30 |" in table
    assert report["figures"] == ["schedules.png"]
    assert (sweep_dir / "report" / "schedules.png").read_bytes()[:4] == b"\x89PNG"
