"""A SLURM job that can never start ends the command instead of pending forever.

The test cluster has one node of 2 CPUs: a request for more is one SLURM holds with reason
PartitionConfig, for good. An explicit --cpus-per-task beyond the nodes stops xlmr-prepare and
xlmr-train before anything is submitted; a job that pends for such a reason anyway is cancelled
by the wait; a --cpus-per-task left at its default is lowered to fit, and the work runs."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from xlmr.slurm import partition, retrying_array
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

SMALL = ["--langs", "el,mk", "--time", "10"]  # 29 kB of text, one array task each


def command(name: str, *argv, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name(name)), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)


def vocabulary(xlmr_data: Path) -> list[str]:
    return ["--spm-model", str(xlmr_data / "spm.model"), "--dict", str(xlmr_data / "dict.txt")]


def queued() -> str:
    return subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %r"], capture_output=True, text=True).stdout


def node_cpus() -> int:
    nodes = partition.offer(None)
    assert nodes is not None and len(nodes.nodes) == 1, "sinfo should list the test cluster's one node"
    return nodes.cpus


def test_prepare_with_more_cpus_than_a_node_has_ends_with_the_flag_to_change(slurm_cluster, corpus_dir, xlmr_data,
                                                                              tmp_path):
    cpus = node_cpus()
    start = time.monotonic()
    run = command("xlmr-prepare", corpus_dir, tmp_path / "dest", *SMALL, *vocabulary(xlmr_data),
                  "--executor", "slurm", "--cpus-per-task", cpus + 2, "--mem-gb", 2, timeout=60)
    assert time.monotonic() - start < 60
    assert run.returncode == 2, run.stderr
    error = run.stderr[run.stderr.index("xlmr-prepare: error:"):]
    assert "never start" in error and f"{cpus + 2} CPUs per task" in error and f"at most {cpus} CPUs" in error
    assert f"--cpus-per-task {cpus} or less" in error
    assert "nothing submitted" in error and "submitted array" not in run.stderr
    assert queued() == ""


def test_train_with_more_cpus_than_a_node_has_ends(slurm_cluster, tmp_path):
    cpus = node_cpus()
    run = command("xlmr-train", tmp_path / "data", "--run-dir", tmp_path / "run", "--executor", "slurm",
                  "--gpus-per-node", 0, "--cpus-per-task", cpus + 1, "--time", 5, "--wait", timeout=60)
    assert run.returncode == 2 and "xlmr-train: error: " in run.stderr and "Traceback" not in run.stderr
    assert "never start" in run.stderr and f"--cpus-per-task {cpus} or less" in run.stderr
    assert "submitted job" not in run.stdout and queued() == ""


@pytest.mark.parametrize("request_, flag", [(dict(cpus_per_task=64), "--cpus-per-task"), (dict(nodes=2), "--nodes 1")])
def test_pending_job_that_never_starts_is_cancelled(slurm_cluster, tmp_path, request_, flag):
    """A request that got past the check before submission (as one would where sinfo does not
    answer): the wait reads SLURM's pending reason, cancels the array and names the flag."""
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, mem_gb=1, **request_)
    tasks = [retrying_array.Task(name, print, (name,)) for name in ("a", "b")]

    def too_long(*_):
        raise TimeoutError(f"still waiting after 60 s; the queue:\n{queued()}")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(60)
    try:
        with pytest.raises(retrying_array.NeverStarts) as never:
            retrying_array.run(executor, tasks, "never", poll_s=0.5)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        subprocess.run(["scancel", "--user", "root"], capture_output=True)  # what a hung wait left
    message = str(never.value)
    assert "never start" in message and "PartitionConfig" in message and flag in message
    assert "cancelled 2 job(s)" in message
    deadline = time.monotonic() + 20
    while "PENDING" in queued() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "PENDING" not in queued()


def test_default_cpus_are_lowered_to_fit_and_the_array_runs(slurm_cluster, corpus_dir, xlmr_data, tmp_path):
    cpus = node_cpus()
    dest = tmp_path / "dest"
    run = command("xlmr-prepare", corpus_dir, dest, *SMALL, *vocabulary(xlmr_data), "--executor", "slurm",
                  "--mem-gb", 2, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"--cpus-per-task {cpus}, not the default 4" in run.stderr and "submitted array" in run.stderr
    scripts = list((dest / ".slurm").glob("*/*_submission.sh"))
    assert scripts and all(f"--cpus-per-task={cpus}\n" in s.read_text() for s in scripts)
    for lang in ("el", "mk"):
        assert (dest / lang / "valid.bin").stat().st_size > 0 and list((dest / lang).glob("train*.bin"))
