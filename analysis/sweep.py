"""`xlmr-sweep DATA --sweep-dir DIR --grid OPTION VALUE...`: one SLURM array over a grid
(or, with `--executor local`, the default, each run in turn on this machine).
`--study alpha|curse|capacity|vocab|schedules` runs one of the analyses instead
(analysis/studies.py) and, once its runs are done, writes `DIR/report/`.

Each `--grid` names a fairseq-train option and its values; every combination is one
run of `xlmr-train`'s job in DIR/<option=value,...>/ with its own checkpoints and
train.log. One of the paper's ablations is then one command, for example

    xlmr-sweep DEST --sweep-dir sweeps/alpha --preset base \\
        --grid multilang-sampling-alpha 0.1 0.3 0.7 1.0 \\
        --grid langs en,fr,de en,fr,de,ru,zh,ja --grid arch xlmr_base xlmr_large
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from xlmr.analysis import report, studies
from xlmr_plugin.storage.atomic import atomic_path
from xlmr.slurm import arguments, train, train_status
from xlmr.slurm.fairseq_train_job import FairseqTrainJob
from xlmr.slurm.scored_train_job import ScoredTrainJob

logger = logging.getLogger("xlmr-sweep")


def grid_points(grid: list[list[str]]) -> list[list[tuple[str, str]]]:
    """Every combination of the grid's values, as (option, value) pairs."""
    axes = [[(axis[0].lstrip("-"), value) for value in axis[1:]] for axis in grid]
    return [list(point) for point in itertools.product(*axes)]


def run_name(point: list[tuple[str, str]]) -> str:
    return ",".join(f"{option}={value.replace(',', '+').replace('/', '_')}" for option, value in point)


def grid_runs(args: argparse.Namespace) -> list[studies.StudyRun]:
    """The grid's combinations as runs; the first axis is the report's x axis."""
    runs = []
    for point in grid_points(args.grid):
        meta = {"x_label": point[0][0], "x": _number(point[0][1])}
        runs.append(studies.StudyRun(run_name(point), args.data, point, meta))
    return runs


def _number(value: str) -> "float | str":
    try:
        return float(value)
    except ValueError:
        return value


def per_run_tensorboard(extra: list[str], run_name_: str) -> list[str]:
    """--tensorboard-logdir DIR of the sweep becomes DIR/<run> for each run."""
    logdir = arguments.flag_value(extra, "--tensorboard-logdir")
    return arguments.merge(extra, ["--tensorboard-logdir", str(Path(logdir) / run_name_)]) if logdir else extra


def write_run_json(run: studies.StudyRun, run_dir: Path, argv: list[str]) -> None:
    """What the run varies and how it was started, for xlmr-report."""
    record = {**run.meta, "name": run.name, "data": str(Path(run.data).resolve()),
              "options": {option: value for option, value in run.options}, "fairseq_train": argv}
    with atomic_path(run_dir / "run.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    # force: importing fairseq has set the root logger to DEBUG (matplotlib's font search would print)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)
    parser = argparse.ArgumentParser(prog="xlmr-sweep", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Other arguments go to every fairseq-train of the grid.")
    parser.add_argument("--sweep-dir", type=Path, required=True, help="one subdirectory per run")
    parser.add_argument("--grid", nargs="+", action="append", metavar="OPTION VALUE",
                        help="a fairseq-train option (without --) and its values; repeat for more axes")
    parser.add_argument("--report-dir", type=Path, help="where the study's report goes (default: DIR/report)")
    train.add_training_arguments(parser)
    studies.add_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if args.data is None:
        parser.error("DATA is required (for --study vocab: the raw corpus)")
    if (args.grid is None) == (args.study is None):
        parser.error("give either --grid or --study")
    if args.grid and any(len(axis) < 2 for axis in args.grid):
        parser.error("--grid takes an option and at least one value")
    if args.executor == "local" and train.gpus_per_node(args) == 0 and train.world_size(args) > 1:
        parser.error("--executor local trains on CPU with one process")
    sweep_dir = args.sweep_dir = args.sweep_dir.resolve()
    try:
        planned = studies.study_runs(args, extra) if args.study else grid_runs(args)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    except RuntimeError as e:  # a study's own preparation (calibration, a data set) failed
        print(f"xlmr-sweep: error: {e}", file=sys.stderr)
        return 1
    runs, jobs = [], []
    for run in planned:
        run_dir = sweep_dir / run.name
        run_dir.mkdir(parents=True, exist_ok=True)
        point_args = [token for option, value in run.options for token in (f"--{option}", value)]
        run_args = copy.copy(args)
        run_args.data = run.data
        argv_run = train.fairseq_arguments(run_args, [*per_run_tensorboard(extra, run.name), *point_args], run_dir)
        write_run_json(run, run_dir, argv_run)
        runs.append(run_dir)
        log = run_dir / "train.log"
        jobs.append(ScoredTrainJob(argv_run, train.world_size(args), log, run.after, run.threads)
                    if run.threads else FairseqTrainJob(argv_run, train.world_size(args), log))
    report_dir = args.report_dir or sweep_dir / "report"
    if args.executor == "local":  # one run after another on this machine: same jobs, same directories
        for job, run_dir in zip(jobs, runs):
            job()
            print("\n".join([f"{run_dir.name}:", *train_status.read_status(run_dir / "train.log").lines()]))
        if args.study:
            report.write_report(runs, report_dir)
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
    print(f"when they are done: xlmr-report {sweep_dir}/*/ --out {report_dir}")
    if not args.wait:
        return 0
    failed = train.wait_and_report(submitted, runs)
    if args.study and not failed:
        report.write_report(runs, report_dir)
    return failed


if __name__ == "__main__":
    sys.exit(main())
