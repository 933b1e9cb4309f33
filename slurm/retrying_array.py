"""Run a list of calls as one SLURM job array, wait for it, and resubmit the tasks
that failed once: a node that dies or a task that runs out of memory should not
need a person, a task that fails twice should (with its log path)."""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import submitit
from tqdm import tqdm

logger = logging.getLogger(__name__)

# squeue states after which a job will not run again; a job squeue no longer lists is over too
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


@dataclass(frozen=True)
class Task:
    """One array task: `fn(*args)`, named `label` in messages."""

    label: str
    fn: Callable
    args: tuple


class ArrayFailed(RuntimeError):
    """Tasks failed twice; the message names each with its log."""


def scheduler_state(job_id: str) -> str:
    """The job's state as squeue reports it, '' once SLURM has forgotten the job."""
    proc = subprocess.run(["squeue", "--states=all", "-h", "-o", "%T", "-j", job_id], capture_output=True, text=True)
    return proc.stdout.strip().split("\n")[0] if proc.returncode == 0 else ""


def finished(job: submitit.Job) -> bool:
    """Done when the result file exists or SLURM says the job is over. submitit alone
    asks sacct, which clusters without accounting (and our test cluster) do not answer."""
    return job.paths.result_pickle.exists() or scheduler_state(job.job_id) in FINAL_STATES | {""}


def failure(job: submitit.Job) -> Optional[str]:
    """None when the job succeeded, else why it failed, naming its log."""
    if job.paths.result_pickle.exists():
        error = job.exception()
        if error is None:
            return None
        trace = str(error).split("-" * 22)  # submitit: header, dashes, traceback, dashes, paths
        lines = [line.strip() for line in (trace[1] if len(trace) > 2 else str(error)).splitlines() if line.strip()]
        reason = f"raised {lines[-1] if lines else error}"
    else:
        reason = f"ended {scheduler_state(job.job_id) or 'without a result'}"
    return f"{reason}; log: {job.paths.stderr}"


def wait(jobs: list[submitit.Job], desc: str, poll_s: float = 2.0) -> None:
    with tqdm(total=len(jobs), desc=desc, unit="task", disable=None) as bar:
        pending = list(jobs)
        while pending:
            still = [job for job in pending if not finished(job)]
            bar.update(len(pending) - len(still))
            pending = still
            if pending:
                time.sleep(poll_s)


def _submit(executor: submitit.Executor, tasks: list[Task]) -> list[submitit.Job]:
    with executor.batch():
        jobs = [executor.submit(task.fn, *task.args) for task in tasks]
    logger.info("submitted array %s: %d tasks; logs in %s", jobs[0].job_id.split("_")[0], len(jobs), jobs[0].paths.folder)
    return jobs


def run(executor: submitit.Executor, tasks: list[Task], desc: str, poll_s: float = 2.0) -> list[Any]:
    """Results of every task, in order; a failed task is reported and resubmitted once."""
    results: list[Any] = [None] * len(tasks)
    todo = list(range(len(tasks)))
    for attempt in (1, 2):
        jobs = _submit(executor, [tasks[i] for i in todo])
        wait(jobs, desc if attempt == 1 else f"{desc} (resubmitted)", poll_s)
        failed = []
        for i, job in zip(todo, jobs):
            why = failure(job)
            if why is None:
                results[i] = job.result()
                continue
            failed.append((i, why))
            logger.error("%s (job %s) failed: %s", tasks[i].label, job.job_id, why)
        todo = [i for i, _ in failed]
        if not todo:
            return results
        if attempt == 1:
            logger.warning("resubmitting %d failed task(s) once: %s", len(todo), ", ".join(tasks[i].label for i in todo))
    lines = "\n".join(f"  {tasks[i].label}: {why}" for i, why in failed)
    raise ArrayFailed(f"{len(failed)} task(s) failed twice:\n{lines}")
