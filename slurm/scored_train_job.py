"""`ScoredTrainJob`: a `FairseqTrainJob` on a fixed number of CPU threads that records the
CPU time its training used and then scores the result in the same job.

A study at equal compute needs both: torch would otherwise take every core of the node, so
that two jobs of one CPU each would share two cores four ways, and CPU-seconds, not the
job's wall clock, are what shows that the runs had the same compute. Scoring inside the
job runs it as soon as the run ends, beside the other jobs, on the run's own CPU.

RUN/usage.json   one entry per job segment (a requeued job adds one): CPU and wall seconds
                 of fairseq-train, the threads it had, the job and the CPUs SLURM gave it
"""
from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import time
from pathlib import Path

from xlmr.slurm.fairseq_train_job import FairseqTrainJob

logger = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ScoredTrainJob(FairseqTrainJob):
    """fairseq-train ARGV on `threads` threads, then each command of `after` in turn (rank 0)."""

    def __init__(self, argv: list[str], world_size: int, log: Path, after: list[list[str]], threads: int):
        super().__init__(argv, world_size, log)
        self.after = [[str(a) for a in command] for command in after]
        self.threads = threads

    def __call__(self) -> Path:
        os.environ.update({name: str(self.threads) for name in THREAD_VARIABLES})  # inherited by every child
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        log = super().__call__()
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - start
        self._record_usage(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall)
        if int(os.environ.get("SLURM_PROCID", "0")) == 0:
            for command in self.after:
                logger.info("scoring: %s", " ".join(command))
                proc = subprocess.run(command, capture_output=True, text=True)
                with open(self.log.with_name("scores.log"), "a", encoding="utf-8") as out:
                    out.write(f"$ {' '.join(command)}\n{proc.stdout}{proc.stderr}")
                if proc.returncode != 0:
                    raise RuntimeError(f"{Path(command[0]).name} exited with {proc.returncode}: see "
                                       f"{self.log.with_name('scores.log')}")
        return log

    def _record_usage(self, cpu_s: float, wall_s: float) -> None:
        path = self.log.with_name("usage.json")
        segments = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        segments.append({"cpu_s": cpu_s, "wall_s": wall_s, "threads": self.threads,
                         "job_id": os.environ.get("SLURM_JOB_ID"), "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK")})
        path.write_text(json.dumps(segments, indent=1) + "\n", encoding="utf-8")
