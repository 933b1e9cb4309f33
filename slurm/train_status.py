"""`xlmr-train --status JOB|RUN_DIR`: where a run stands, read from its log.

fairseq-train logs a `train_inner` record per --log-interval, a `train` record at the
end of each epoch (and of the run) and a line per saved checkpoint; the newest of each is
the state of the run. A run shorter than --log-interval (100 by default) has only `train`
records.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from xlmr.slurm import fairseq_log
from xlmr.slurm.retrying_array import scheduler_state

_TRAINING = ("train_inner", "train")


@dataclass
class RunStatus:
    log: Path
    state: str = ""
    updates: Optional[int] = None
    loss: Optional[float] = None
    wps: Optional[float] = None
    last_checkpoint: Optional[str] = None
    checkpoint_updates: Optional[int] = None
    error: Optional[str] = None

    def lines(self) -> list[str]:
        rows = [("state", self.state or "unknown (not in the queue)"), ("log", str(self.log)),
                ("updates", self.updates), ("loss", self.loss), ("words/s", self.wps),
                ("last checkpoint", f"{self.last_checkpoint} ({self.checkpoint_updates} updates)"
                 if self.last_checkpoint else None)]
        if self.error:
            rows.append(("error", self.error))
        return [f"{name:>16}: {'-' if value is None else value}" for name, value in rows]


def read_status(log: Path) -> RunStatus:
    """The run as its log tells it; an error is kept only if the run made no progress after it
    (a requeued job that failed once and then trained on is not failing)."""
    status = RunStatus(log)
    if not log.exists():
        return status
    for event in fairseq_log.events(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if isinstance(event, fairseq_log.Record) and event.tag in _TRAINING:
            _take_record(status, event)
            status.error = None
        elif isinstance(event, fairseq_log.SavedCheckpoint):
            status.last_checkpoint, status.checkpoint_updates = event.path, event.updates
            status.error = None
        elif isinstance(event, fairseq_log.Failure):
            status.error = event.line
    return status


def _take_record(status: RunStatus, record: fairseq_log.Record) -> None:
    """Show a training record, unless it is the epoch's average (`train`) at the update count of
    the `train_inner` record shown: the latter says how training goes now."""
    stats = record.stats
    updates = int(stats.get("num_updates", status.updates or 0))
    if record.tag == "train" and updates == status.updates:
        return
    status.updates = updates
    status.loss = float(stats.get("loss", status.loss or 0))
    status.wps = float(stats.get("wps", status.wps or 0))


def run_directory(job_or_dir: str) -> Path:
    """A run directory as given, or the one SLURM holds in the job's comment."""
    if Path(job_or_dir).is_dir():
        return Path(job_or_dir)
    shown = subprocess.run(["scontrol", "show", "job", job_or_dir], capture_output=True, text=True)
    comment = re.search(r"Comment=(\S+)", shown.stdout)
    if shown.returncode != 0 or comment is None:
        raise SystemExit(f"xlmr-train: job {job_or_dir} is not known to SLURM any more: pass its run directory instead")
    return Path(comment.group(1))


def job_of(run_dir: Path) -> Optional[str]:
    job = run_dir / "job_id"
    return job.read_text().strip() if job.exists() else None


def status(job_or_dir: str) -> RunStatus:
    run_dir = run_directory(job_or_dir)
    result = read_status(run_dir / "train.log")
    job_id = job_of(run_dir)
    if job_id:
        result.state = f"{scheduler_state(job_id)} (job {job_id})"
    return result
