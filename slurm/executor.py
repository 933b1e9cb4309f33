"""The `--executor {local,slurm}` switch and the SLURM options our commands share.

`local` (the default) runs the work on this machine; `slurm` submits it with
submitit, whose logs and pickles live in a folder on shared storage. The options
travel as one `ExecutorOptions`, so that the code submitting jobs never sees the
flags of the command that parsed them.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import submitit

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser, cpus: int, mem_gb: float, time_min: int) -> None:
    """Add --executor and the SLURM resource options, with this command's defaults."""
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="local: run on this machine (default); slurm: submit to the cluster")
    group = parser.add_argument_group("SLURM (with --executor slurm)")
    group.add_argument("--partition", help="partition to submit to (default: the cluster's default)")
    group.add_argument("--time", type=int, default=time_min, dest="time_min", help="time limit per job, minutes")
    group.add_argument("--cpus-per-task", type=int, default=cpus, help="CPU cores per task")
    group.add_argument("--mem-gb", type=float, default=mem_gb, help="memory per node, GB (0: the partition's default)")
    group.add_argument("--account", help="account to charge")
    group.add_argument("--qos", help="quality of service")
    group.add_argument("--constraint", help="node features required (sbatch --constraint)")
    group.add_argument("--slurm-folder", type=Path, help="where job logs and submitit files go (shared storage)")
    group.add_argument("--array-parallelism", type=int, default=256, help="array tasks running at once, at most")


@dataclass(frozen=True)
class ExecutorOptions:
    """The values of the flags `add_arguments` adds, one field per flag."""

    executor: str  # "local" or "slurm"
    partition: Optional[str]
    time_min: int
    cpus_per_task: int
    mem_gb: float
    account: Optional[str]
    qos: Optional[str]
    constraint: Optional[str]
    slurm_folder: Optional[Path]
    array_parallelism: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ExecutorOptions":
        """The options out of a namespace parsed with `add_arguments`' flags (and others, ignored)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @property
    def on_slurm(self) -> bool:
        return self.executor == "slurm"


def slurm_executor(options: ExecutorOptions, folder: Path, name: str, **parameters: Any) -> submitit.AutoExecutor:
    """A SLURM executor for `options`, its files under `options.slurm_folder` or else `folder`;
    `parameters` are submitit's (nodes, tasks_per_node, gpus_per_node, ...) and win over the shared ones."""
    folder = Path(options.slurm_folder or folder)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    extra = {key: value for key in ("account", "qos", "constraint") if (value := getattr(options, key))}
    shared = dict(
        name=name,
        timeout_min=options.time_min,
        cpus_per_task=options.cpus_per_task,
        slurm_array_parallelism=options.array_parallelism,
        slurm_additional_parameters=extra,
    )
    if options.partition:
        shared["slurm_partition"] = options.partition
    if options.mem_gb:
        shared["mem_gb"] = options.mem_gb  # else the partition's default
    executor.update_parameters(**{**shared, **parameters})
    return executor
