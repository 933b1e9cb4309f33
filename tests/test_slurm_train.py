"""xlmr-train on a real one-node cluster: a 2-task CPU job (gloo) against a local
2-process run, a job requeued mid-run against an uninterrupted one, failing jobs, a run
without a preset and one in fairseq's default log format; and the preset arithmetic."""
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xlmr.slurm import arguments, fairseq_log, train
from xlmr.slurm.fairseq_train_job import fairseq_train_command
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

# a 2-layer width-64 model on two languages, one update a few tens of milliseconds
TINY = [
    "--task", "xlmr_mlm", "--langs", "el,ja", "--criterion", "xlmr_masked_lm", "--arch", "xlmr_tiny",
    "--tokens-per-sample", "64", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
    "--warmup-updates", "5", "--total-num-update", "300", "--batch-size", "8", "--log-format", "json",
    "--log-interval", "1", "--num-workers", "0", "--seed", "3", "--required-batch-size-multiple", "1",
    "--disable-validation", "--no-epoch-checkpoints",
]
SLURM = ["--executor", "slurm", "--gpus-per-node", "0", "--cpus-per-task", "1", "--mem-gb", "3", "--time", "5"]


def losses(log: str) -> list[tuple[int, float]]:
    """(update, loss) of every train_inner record of a fairseq json log."""
    records = [json.loads(m) for m in re.findall(r"\| INFO \| train_inner \| (\{.*\})", log)]
    return [(int(r["num_updates"]), float(r["loss"])) for r in records]


def without(argv: list[str], *flags: str) -> list[str]:
    """``argv`` less the given flags and their values."""
    kept: list[str] = []
    dropping = False
    for token in argv:
        if token.startswith("--"):
            dropping = token in flags
        if not dropping:
            kept.append(token)
    return kept


def xlmr_train(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("xlmr-train")), *map(str, argv)],
                          capture_output=True, text=True, timeout=300)


def test_two_cpu_tasks_match_local_two_process_run(slurm_cluster, xlmr_data, tmp_path):
    run = xlmr_train(xlmr_data, "--run-dir", tmp_path / "slurm", *SLURM, "--tasks-per-node", "2", "--wait",
                     *TINY, "--max-update", "12", "--save-interval-updates", "6")
    assert run.returncode == 0, run.stdout + run.stderr
    job = re.search(r"submitted job (\d+)", run.stdout).group(1)
    assert f"slurm/{job}/{job}_0_log.out" in run.stdout and "tail -f" in run.stdout
    on_slurm = losses((tmp_path / "slurm" / "train.log").read_text())

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    common = [xlmr_data, "--user-dir", train.plugin_dir(), "--cpu", "--distributed-backend", "gloo",
              "--ddp-backend", "legacy_ddp", "--distributed-world-size", "2", "--distributed-no-spawn",
              "--distributed-init-method", f"tcp://localhost:{port}", "--save-dir", tmp_path / "local",
              *TINY, "--max-update", "12"]
    ranks = [subprocess.Popen(fairseq_train_command() + [str(a) for a in common] + ["--distributed-rank", str(r)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    local = losses(ranks[0].communicate(timeout=300)[0])
    assert [p.wait() for p in ranks] == [0, 0]
    assert [u for u, _ in on_slurm] == list(range(1, 13))
    assert on_slurm == local

    status = xlmr_train("--status", job)
    assert re.search(r"updates: 12\n", status.stdout) and f"loss: {on_slurm[-1][1]}" in status.stdout
    assert "checkpoint_1_12.pt (12 updates)" in status.stdout, status.stdout


def test_requeued_job_resumes_and_ends_as_uninterrupted(slurm_cluster, xlmr_data, tmp_path):
    args = [*TINY, "--max-update", "300", "--save-interval-updates", "50"]
    straight = xlmr_train(xlmr_data, "--run-dir", tmp_path / "straight", "--executor", "local", "--gpus-per-node", "0", *args)
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = losses((tmp_path / "straight" / "train.log").read_text())

    run_dir = tmp_path / "requeued"
    submitted = xlmr_train(xlmr_data, "--run-dir", run_dir, *SLURM, *args)
    job = re.search(r"submitted job (\d+)", submitted.stdout).group(1)
    deadline = time.time() + 180
    while time.time() < deadline:  # requeue once past the first checkpoint, before the second
        done = losses((run_dir / "train.log").read_text()) if (run_dir / "train.log").exists() else []
        if done and done[-1][0] >= 60:
            break
        time.sleep(0.2)
    assert done and 60 <= done[-1][0] < 100, "the job must be stopped between checkpoints 50 and 100"
    subprocess.run(["scontrol", "requeue", job], check=True)
    finished = xlmr_train("--status", run_dir)
    while "updates: 300" not in finished.stdout and time.time() < deadline + 240:
        time.sleep(2)
        finished = xlmr_train("--status", run_dir)
    log = (run_dir / "train.log").read_text()
    assert "updates: 300" in finished.stdout, log[-3000:]
    assert log.count("Loaded checkpoint") == 1 and "(epoch 1 @ 50 updates)" in log.split("Loaded checkpoint")[1]
    runs = log.split("Loaded checkpoint")
    assert losses(runs[1]) == reference[50:]  # after the restart: the uninterrupted run's updates 51..300
    assert losses(runs[0])[:50] == reference[:50]


def test_failing_job_shows_error_and_log(slurm_cluster, xlmr_data, tmp_path):
    run = xlmr_train(xlmr_data, "--run-dir", tmp_path / "bad", *SLURM, "--wait", *TINY, "--langs", "el,xx")
    assert run.returncode == 1
    assert "--langs: no training data for xx" in run.stderr
    assert f"see {tmp_path / 'bad' / 'train.log'}" in run.stderr


def test_a_failed_job_reports_the_error_line_itself(slurm_cluster, xlmr_data, tmp_path):
    run = xlmr_train(xlmr_data, "--run-dir", tmp_path / "bad", *SLURM, "--wait", *TINY, "--mask-probability", "0.2")
    assert run.returncode == 1
    error = "fairseq-train: error: unrecognized arguments: --mask-probability 0.2"
    assert f"failed: {error}\n" in run.stderr, run.stderr
    status = xlmr_train("--status", tmp_path / "bad")
    assert f"error: {error}\n" in status.stdout, status.stdout


def test_without_preset_the_job_trains_the_xlmr_task_and_criterion(slurm_cluster, xlmr_data, tmp_path):
    run = xlmr_train(xlmr_data, "--run-dir", tmp_path / "run", *SLURM, "--tasks-per-node", "2", "--wait",
                     *without(TINY, "--task", "--criterion"), "--max-update", "4")
    assert run.returncode == 0, run.stdout + run.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "task: XLMRMLMTask" in log and "criterion: XLMRMaskedLmLoss" in log
    assert [update for update, _ in losses(log)] == [1, 2, 3, 4]


def test_status_reads_a_run_in_fairseqs_default_log_format(slurm_cluster, xlmr_data, tmp_path):
    run = xlmr_train(xlmr_data, "--run-dir", tmp_path / "run", *SLURM, "--wait",
                     *without(TINY, "--log-format", "--log-interval"), "--max-update", "4")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert not list(fairseq_log.records(lines, "train_inner"))  # 4 updates, logged every 100 by default
    [epoch] = fairseq_log.records(lines, "train")  # the simple format: "train | epoch 001 | loss 10.9 | ..."
    status = xlmr_train("--status", tmp_path / "run").stdout
    assert "updates: 4\n" in status and f"loss: {epoch.stats['loss']}\n" in status, status
    assert f"words/s: {epoch.stats['wps']}\n" in status


def test_preset_holds_total_batch_and_extra_arguments_win(tmp_path):
    assert arguments.update_freq(8192, 64, 32) == 4  # 64 V100s x 32 x 4 = 8192 (Base)
    assert arguments.update_freq(8192, 2 * 8, 16) == 32  # 2 nodes x 8 GPUs x 16 x 32 (Large)
    parser = __import__("argparse").ArgumentParser()
    train.add_training_arguments(parser)
    args, extra = parser.parse_known_args(["DATA", "--preset", "large", "--nodes", "4", "--gpus-per-node", "8",
                                           "--bf16", "--lr", "1e-4", "--batch-size", "8"])
    argv = train.fairseq_arguments(args, extra, tmp_path)
    assert arguments.flag_value(argv, "--update-freq") == "32"  # 4 x 8 x 8 x 32 = 8192
    assert arguments.flag_value(argv, "--lr") == "1e-4" and argv.count("--lr") == 1
    assert "--bf16" in argv and "--fp16" not in argv
    assert arguments.flag_value(argv, "--warmup-updates") == "30000" and arguments.flag_value(argv, "--clip-norm") == "0.0"


def test_sweep_runs_every_grid_point_in_its_own_directory(xlmr_data, tmp_path):
    sweep = subprocess.run(
        [str(Path(sys.executable).with_name("xlmr-sweep")), xlmr_data, "--sweep-dir", tmp_path / "alpha",
         "--gpus-per-node", "0", "--grid", "multilang-sampling-alpha", "0.3", "1.0", *TINY, "--max-update", "4"],
        capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "alpha").iterdir() if p.is_dir())
    assert runs == ["multilang-sampling-alpha=0.3", "multilang-sampling-alpha=1.0"]
    for run, alpha in zip(runs, ("0.3", "1")):
        log = (tmp_path / "alpha" / run / "train.log").read_text()
        assert f"language sampling, alpha={alpha}, from update 0 (epoch 1)" in log
        assert [update for update, _ in losses(log)] == [1, 2, 3, 4]
        assert (tmp_path / "alpha" / run / "checkpoints" / "checkpoint_last.pt").exists()
