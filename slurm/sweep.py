"""`xlmr-sweep DATA --sweep-dir DIR --grid OPTION VALUE...`: one SLURM array over a grid
(or, with `--executor local`, the default, each run in turn on this machine).

Each `--grid` names a fairseq-train option and its values; every combination is one
run of `xlmr-train`'s job in DIR/<option=value,...>/ with its own checkpoints and
train.log. One of the paper's ablations is then one command, for example

    xlmr-sweep DEST --sweep-dir sweeps/alpha --preset base \\
        --grid multilang-sampling-alpha 0.1 0.3 0.7 1.0 \\
        --grid langs en,fr,de en,fr,de,ru,zh,ja --grid arch xlmr_base xlmr_large
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path
from typing import Optional

from slurm import train, train_status
from slurm.fairseq_train_job import FairseqTrainJob

logger = logging.getLogger("xlmr-sweep")


def grid_points(grid: list[list[str]]) -> list[list[tuple[str, str]]]:
    """Every combination of the grid's values, as (option, value) pairs."""
    axes = [[(axis[0].lstrip("-"), value) for value in axis[1:]] for axis in grid]
    return [list(point) for point in itertools.product(*axes)]


def run_name(point: list[tuple[str, str]]) -> str:
    return ",".join(f"{option}={value.replace(',', '+').replace('/', '_')}" for option, value in point)


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    parser = argparse.ArgumentParser(prog="xlmr-sweep", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Other arguments go to every fairseq-train of the grid.")
    parser.add_argument("--sweep-dir", type=Path, required=True, help="one subdirectory per run")
    parser.add_argument("--grid", nargs="+", action="append", required=True, metavar="OPTION VALUE",
                        help="a fairseq-train option (without --) and its values; repeat for more axes")
    train.add_training_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if args.data is None:
        parser.error("DATA is required")
    if any(len(axis) < 2 for axis in args.grid):
        parser.error("--grid takes an option and at least one value")
    if args.executor == "local" and args.gpus_per_node == 0 and train.world_size(args) > 1:
        parser.error("--executor local trains on CPU with one process")
    sweep_dir = args.sweep_dir.resolve()
    runs, jobs = [], []
    for point in grid_points(args.grid):
        run_dir = sweep_dir / run_name(point)
        run_dir.mkdir(parents=True, exist_ok=True)
        point_args = [token for option, value in point for token in (f"--{option}", value)]
        argv_run = train.fairseq_arguments(args, [*extra, *point_args], run_dir)
        runs.append(run_dir)
        jobs.append(FairseqTrainJob(argv_run, train.world_size(args), run_dir / "train.log"))
    if args.executor == "local":  # one run after another on this machine: same jobs, same directories
        for job, run_dir in zip(jobs, runs):
            job()
            print("\n".join([f"{run_dir.name}:", *train_status.read_status(run_dir / "train.log").lines()]))
        return 0
    executor = train.make_executor(args, sweep_dir / "slurm", f"xlmr-sweep-{sweep_dir.name}")
    with executor.batch():
        submitted = [executor.submit(job) for job in jobs]
    width = max(len(r.name) for r in runs)
    print(f"submitted {len(submitted)} runs as array {submitted[0].job_id.split('_')[0]}:")
    for job, run_dir in zip(submitted, runs):
        (run_dir / "job_id").write_text(f"{job.job_id}\n")
        print(f"  {run_dir.name:<{width}}  job {job.job_id:<10}  {run_dir / 'train.log'}")
    print(f"status of one run: xlmr-train --status {runs[0]}")
    return train.wait_and_report(submitted, runs) if args.wait else 0


if __name__ == "__main__":
    sys.exit(main())
