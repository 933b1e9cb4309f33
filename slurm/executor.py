"""The `--executor {local,slurm}` switch and the SLURM options our commands share.

`local` (the default) runs the work on this machine; `slurm` submits it with
submitit, whose logs and pickles live in a folder on shared storage.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

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


def slurm_executor(args: argparse.Namespace, folder: Path, name: str, **parameters: Any) -> submitit.AutoExecutor:
    """A SLURM executor for the options of `add_arguments`; `parameters` are submitit's
    (nodes, tasks_per_node, gpus_per_node, ...) and win over the shared ones."""
    folder = Path(args.slurm_folder or folder)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    extra = {key: value for key in ("account", "qos", "constraint") if (value := getattr(args, key))}
    shared = dict(
        name=name,
        timeout_min=args.time_min,
        cpus_per_task=args.cpus_per_task,
        slurm_array_parallelism=args.array_parallelism,
        slurm_additional_parameters=extra,
    )
    if args.partition:
        shared["slurm_partition"] = args.partition
    if args.mem_gb:
        shared["mem_gb"] = args.mem_gb  # else the partition's default
    executor.update_parameters(**{**shared, **parameters})
    return executor
