"""Run a list of calls as one SLURM job array, wait for it, and resubmit the tasks
that failed once: a node that dies or a task that runs out of memory should not
need a person, a task that fails twice should (with its log path). A job SLURM holds with a
pending reason that means it will never start is cancelled, and the command ends saying what
it asked, what the partition offers and which flag to change."""
from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import submitit
from tqdm import tqdm

from xlmr.slurm import partition

logger = logging.getLogger(__name__)

# squeue states after which a job will not run again; a job squeue no longer lists is over too
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}

# Pending reasons (squeue(1), "JOB REASON CODES"; SLURM's resource_limits page) that mean the job
# will not start as asked, however long it waits: only a change of the request (or of the
# cluster's configuration, by its admins) lets it run. Each with what it means and the flag to change.
NEVER = {
    "PartitionConfig": ("the request exceeds what the partition is configured to give", None),
    "PartitionTimeLimit": ("the time limit exceeds the partition's", "--time"),
    "BadConstraints": ("no node has the features and resources asked", "--constraint"),
    "InvalidAccount": ("the account does not exist or may not use this partition", "--account"),
    "InvalidQOS": ("the QOS does not exist or may not be used by this account", "--qos"),
}
# Limits on one job's size or length ("AssocMaxCpuPerJobLimit", "QOSMaxGRESPerNode", "QOSMinCpuNotSatisfied",
# ...) stay however long it waits, unlike Grp*, *PerUser* and *PerAccount* limits, which lift as other jobs end.
PER_JOB_LIMIT = re.compile(r"(Assoc|QOS)(Max\w*Per(Job|Node)|Min)\w*")
PER_JOB_FLAGS = (("GRES", "--gpus-per-node"), ("Mem", "--mem-gb"), ("WallDuration", "--time"), ("Cpu", "--cpus-per-task"),
                 ("Node", "--nodes"))  # the first word in the reason names the flag: QOSMaxGRESPerNode is about GPUs
# Reasons that also mean "not now" (nodes down, drained, reserved or busy): "never" only when no node
# of the partition, whatever its state, can hold the request.
NEVER_IF_NO_NODE_FITS = {"PartitionNodeLimit", "ReqNodeNotAvail", "Resources"}


@dataclass(frozen=True)
class Task:
    """One array task: `fn(*args)`, named `label` in messages."""

    label: str
    fn: Callable
    args: tuple


class ArrayFailed(RuntimeError):
    """Tasks failed twice; the message names each with its log."""


class NeverStarts(ArrayFailed):
    """A job cannot start on its partition as asked; the message says why and which flag to change."""


def queue_entry(job_id: str) -> tuple[str, str]:
    """The job's state and pending reason as squeue reports them, ('', '') once SLURM has forgotten the job."""
    proc = subprocess.run(["squeue", "--states=all", "-h", "-o", "%T|%r", "-j", job_id], capture_output=True, text=True)
    state, _, reason = (proc.stdout.strip().split("\n")[0] if proc.returncode == 0 else "").partition("|")
    return state, reason


def scheduler_state(job_id: str) -> str:
    """The job's state as squeue reports it, '' once SLURM has forgotten the job."""
    return queue_entry(job_id)[0]


def finished(job: submitit.Job, state: Optional[str] = None) -> bool:
    """Done when the result file exists or SLURM says the job is over (`state`, else asked now).
    submitit alone asks sacct, which clusters without accounting (and our test cluster) do not answer."""
    if job.paths.result_pickle.exists():
        return True
    return (scheduler_state(job.job_id) if state is None else state) in FINAL_STATES | {""}


def never_starts(job_id: str, reason: str) -> Optional[str]:
    """Why the pending job will never start: its reason, what it asks, what its partition offers and
    the flag to change; None while it may still start."""
    code = re.match(r"\w*", reason).group()
    if not (code in NEVER or code in NEVER_IF_NO_NODE_FITS or PER_JOB_LIMIT.fullmatch(code)):
        return None
    known = partition.job_request(job_id)
    if known is None:
        return None
    request, name = known
    nodes = partition.offer(name or None)
    short = partition.shortfalls(request, nodes) if nodes else []
    if code in NEVER:
        meaning, flag = NEVER[code]
    elif PER_JOB_LIMIT.fullmatch(code):
        meaning = "a limit on one job's size or length that its association or QOS sets"
        flag = next((f for word, f in PER_JOB_FLAGS if word in code), None)
    elif short:
        meaning = "no node of the partition, in any state, can hold the request"
        flag = None
    else:
        return None  # nodes that could hold it are down, reserved or busy: it may start later
    change = short + ([flag] if flag and not any(s.startswith(flag) for s in short) else [])
    return (f"job {job_id} will never start: SLURM holds it with reason {reason} ({meaning}).\n"
            f"  asked: {request}\n  {nodes or f'partition {name}: sinfo does not list its nodes'}\n"
            f"  change: {'; '.join(change) or 'the request'}, or submit to another --partition")


def cancel(jobs: list[submitit.Job]) -> None:
    """scancel the jobs (array tasks are named one by one, so no other task of their array is touched)."""
    subprocess.run(["scancel", *(job.job_id for job in jobs)], capture_output=True, text=True)


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
    """Until every job is over; when SLURM holds one with a reason that means it never will start,
    cancel those not over and raise NeverStarts."""
    may_start: set[tuple[str, str]] = set()  # (array, reason): the tasks of an array ask the same, ask once
    with tqdm(total=len(jobs), desc=desc, unit="task", disable=None) as bar:
        pending = list(jobs)
        while pending:
            entries = {job.job_id: queue_entry(job.job_id) for job in pending}
            still = [job for job in pending if not finished(job, entries[job.job_id][0])]
            bar.update(len(pending) - len(still))
            pending = still
            for job in pending:
                state, reason = entries[job.job_id]
                key = (job.job_id.split("_")[0], reason)
                if state != "PENDING" or key in may_start:
                    continue
                why = never_starts(job.job_id, reason)
                if why is None:
                    may_start.add(key)
                    continue
                cancel(pending)
                ids = " ".join(job.job_id for job in pending[:8]) + (" ..." if len(pending) > 8 else "")
                raise NeverStarts(f"{why}\n  cancelled {len(pending)} job(s) not over: {ids}")
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
