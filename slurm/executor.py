"""The `--executor {local,slurm}` switch and the SLURM options our commands share.

`local` (the default) runs the work on this machine; `slurm` submits it with
submitit, whose logs and pickles live in a folder on shared storage. The options
travel as one `ExecutorOptions`, so that the code submitting jobs never sees the
flags of the command that parsed them.

A request no node of the partition can hold would pend forever: a `--cpus-per-task` left at the
command's default is lowered to what the partition's nodes have (and logged), and any other
request that cannot fit stops the command before anything is submitted, naming the flag to change.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional

import submitit

from xlmr.slurm import partition
from xlmr.slurm.retrying_array import NeverStarts

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser, cpus: int, mem_gb: float, time_min: int) -> None:
    """Add --executor and the SLURM resource options, with this command's defaults."""
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="local: run on this machine (default); slurm: submit to the cluster")
    group = parser.add_argument_group("SLURM (with --executor slurm)")
    group.add_argument("--partition", help="partition to submit to (default: the cluster's default)")
    group.add_argument("--time", type=int, default=time_min, dest="time_min", help="time limit per job, minutes")
    group.add_argument("--cpus-per-task", type=int,
                        help=f"CPU cores per task (default: {cpus}, or fewer if the partition's nodes have fewer)")
    parser.set_defaults(default_cpus_per_task=cpus)  # read by ExecutorOptions.from_args when the flag is not given
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
    default_cpus_per_task: Optional[int] = None  # the command's, when --cpus-per-task was not given: lowered to fit

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ExecutorOptions":
        """The options out of a namespace parsed with `add_arguments`' flags (and others, ignored),
        a default --cpus-per-task fitted to the partition's nodes for one task per node."""
        default = args.default_cpus_per_task if args.cpus_per_task is None else None
        options = cls(**{f.name: getattr(args, f.name) for f in fields(cls) if "cpus_per_task" not in f.name},
                      cpus_per_task=default or args.cpus_per_task, default_cpus_per_task=default)
        return fit_default_cpus(options, tasks_per_node=1)

    @property
    def on_slurm(self) -> bool:
        return self.executor == "slurm"


def fit_default_cpus(options: ExecutorOptions, tasks_per_node: int) -> ExecutorOptions:
    """`options` with a default --cpus-per-task lowered, if need be, so that `tasks_per_node` tasks fit on
    the partition's largest node; unchanged when the value was given or sinfo does not answer."""
    default = options.default_cpus_per_task
    nodes = partition.offer(options.partition) if options.on_slurm and default else None
    cpus = min(default, max(1, nodes.cpus // tasks_per_node)) if nodes else options.cpus_per_task
    if cpus == options.cpus_per_task:
        return options
    logger.info("--cpus-per-task %d, not the default %d: the nodes of partition %s have %d CPUs for %d task(s) each",
                cpus, default, nodes.partition, nodes.cpus, tasks_per_node)
    return replace(options, cpus_per_task=cpus)


def check_fits(options: ExecutorOptions, nodes: int = 1, tasks_per_node: int = 1, gpus_per_node: int = 0) -> None:
    """Raise NeverStarts, naming the flags to change, when no node of the partition can hold the request
    (such a job would pend forever); silent when sinfo does not answer: `retrying_array.wait` checks again."""
    offer = partition.offer(options.partition)
    request = partition.Request(nodes, tasks_per_node, options.cpus_per_task, int(options.mem_gb * 1024), gpus_per_node)
    short = partition.shortfalls(request, offer) if offer else []
    if short:
        raise NeverStarts(f"nothing submitted: a job asking {request} would never start: {offer}.\n"
                          f"  change: {'; '.join(short)}, or submit to another --partition")


def slurm_executor(options: ExecutorOptions, folder: Path, name: str, **parameters: Any) -> submitit.AutoExecutor:
    """A SLURM executor for `options`, its files under `options.slurm_folder` or else `folder`;
    `parameters` are submitit's (nodes, tasks_per_node, gpus_per_node, ...) and win over the shared ones.
    Raises NeverStarts when the partition cannot hold the request."""
    shape = dict(nodes=parameters.get("nodes", 1), tasks_per_node=parameters.get("tasks_per_node", 1),
                 gpus_per_node=parameters.get("gpus_per_node", 0))
    options = fit_default_cpus(options, shape["tasks_per_node"])
    check_fits(options, **shape)
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
