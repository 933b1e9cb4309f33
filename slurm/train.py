"""`xlmr-train DATA --run-dir RUN`: submit fairseq-train over N nodes x G GPUs.

One task per GPU; `--preset NAME` trains a recipe of xlmr_plugin/recipes.py (the
paper's base and large: bf16, which the job swaps for fp16 on a GPU without it), with
`--update-freq` derived so that every update sees the recipe's total batch whatever
the number of GPUs. Without a preset the run still trains the recipes' masked-LM task and
criterion (fairseq's own default is translation), in fp16 on GPUs and fp32 on CPUs. `--gpus-per-node` defaults to the GPUs
there are: this machine's with `--executor local`, the partition's nodes' on SLURM. Any other argument is
passed to fairseq-train and wins over the preset. A job at its time limit or preempted is
requeued and resumes from RUN/checkpoints/checkpoint_last.pt.

RUN/train.log     fairseq's log (rank 0)      RUN/checkpoints/  fairseq's checkpoints
RUN/slurm/<job>/  submitit's logs             RUN/job_id        the last job submitted
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import submitit

from xlmr_plugin.recipes import PRECISIONS, RECIPES, Recipe
from xlmr.slurm import arguments, fairseq_log, partition, retrying_array, train_status
from xlmr.slurm import executor as slurm_executor
from xlmr.slurm.fairseq_train_job import CPU_DISTRIBUTED, FairseqTrainJob

logger = logging.getLogger("xlmr-train")

# a run without --preset: fp16 on GPUs (fp32 on CPUs), and at most this many updates redone after a preemption
DEFAULT_PRECISION = "fp16"
CPU_DEFAULT_PRECISION = "fp32"
# --gpus-per-node on SLURM when sinfo does not say what the nodes have
SLURM_GPUS_PER_NODE = 8
DEFAULT_SAVE_INTERVAL = 1000
# and XLM-R's masked LM, which every recipe trains: fairseq's own default task is translation
NO_PRESET = Recipe(task=RECIPES["base"].task, criterion=RECIPES["base"].criterion, precision=DEFAULT_PRECISION,
                   save_interval_updates=DEFAULT_SAVE_INTERVAL)


def plugin_dir() -> str:
    """xlmr_plugin's folder for --user-dir, found without importing fairseq."""
    return importlib.util.find_spec("xlmr_plugin").submodule_search_locations[0]


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `xlmr-train` and `xlmr-sweep` share."""
    parser.add_argument("data", nargs="?", type=Path, help="output folder of xlmr-prepare")
    parser.add_argument("--preset", choices=sorted(RECIPES), help="a training recipe (see xlmr_plugin/recipes.py)")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int,
                        help="one task per GPU; 0 trains on CPUs (default: this machine's GPUs with --executor "
                             f"local, the partition's nodes' on SLURM, {SLURM_GPUS_PER_NODE} when sinfo does not say)")
    parser.add_argument("--tasks-per-node", type=int, default=1, help="with --gpus-per-node 0: CPU processes per node")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"default: the preset's, else {DEFAULT_PRECISION} on GPUs and {CPU_DEFAULT_PRECISION} "
                             "on CPUs; fp16 needs GPUs")
    parser.add_argument("--total-batch", type=int,
                        help="with --preset: sequences per update, kept whatever the number of GPUs "
                             "(default: the preset's)")
    parser.add_argument("--save-interval-updates", type=int,
                        help="checkpoint every N updates: at most N updates are redone after a preemption "
                             f"(default: the preset's, else {DEFAULT_SAVE_INTERVAL})")
    parser.add_argument("--wait", action="store_true", help="wait for the job and report how it ended")
    slurm_executor.add_arguments(parser, cpus=10, mem_gb=0, time_min=72 * 60)


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def gpus_per_node(args: argparse.Namespace) -> int:
    """--gpus-per-node, or the GPUs there are where it was not given (decided once, logged): a
    fixed 8 made fairseq assert on the world size of a one-GPU machine."""
    if args.gpus_per_node is None:
        if getattr(args, "executor", "local") == "local":
            args.gpus_per_node, where = local_gpus(), "this machine's"
        else:
            offer = partition.offer(getattr(args, "partition", None))
            args.gpus_per_node, where = (offer.gpus, str(offer)) if offer else (SLURM_GPUS_PER_NODE, "sinfo did not answer")
        logger.info("--gpus-per-node %d (%s)", args.gpus_per_node, where)
    return args.gpus_per_node


def world_size(args: argparse.Namespace) -> int:
    return args.nodes * (gpus_per_node(args) or args.tasks_per_node)


def run_recipe(args: argparse.Namespace) -> Recipe:
    """What this run trains: the preset's recipe (or `NO_PRESET`) on this run's hardware."""
    recipe = RECIPES[args.preset] if args.preset else NO_PRESET
    cpu = gpus_per_node(args) == 0
    if cpu and args.precision == "fp16":
        raise ValueError("--precision fp16 needs GPUs (--gpus-per-node 0 trains on CPUs): use bf16 or fp32")
    default = CPU_DEFAULT_PRECISION if cpu and not args.preset else recipe.precision
    return replace(recipe, cpu=cpu, precision=args.precision or default,
                   save_interval_updates=args.save_interval_updates or recipe.save_interval_updates)


def fairseq_arguments(args: argparse.Namespace, extra: list[str], run_dir: Path) -> list[str]:
    """The fairseq-train arguments of this run: the recipe on this hardware, the batch, then `extra`,
    each replacing the same options of what comes before."""
    recipe = run_recipe(args)
    base = [str(args.data), "--user-dir", plugin_dir(), "--save-dir", str(run_dir / "checkpoints")]
    base += recipe.fairseq_args()
    if recipe.cpu and world_size(args) > 1:
        base = arguments.merge(base, CPU_DISTRIBUTED)
    total_batch = args.total_batch or recipe.total_batch
    if args.preset and total_batch:
        batch = int(arguments.flag_value(extra, "--batch-size") or recipe.batch_size)
        freq = arguments.update_freq(total_batch, world_size(args), batch)
        base = arguments.merge(base, ["--batch-size", str(batch), "--update-freq", str(freq)])
    return arguments.merge(base, extra)


def make_executor(args: argparse.Namespace, folder: Path, name: str):
    parameters = dict(nodes=args.nodes, tasks_per_node=gpus_per_node(args) or args.tasks_per_node,
                      slurm_signal_delay_s=120, slurm_srun_args=["--kill-on-bad-exit=1"])
    if gpus_per_node(args) > 0:
        parameters["gpus_per_node"] = gpus_per_node(args)
    options = slurm_executor.ExecutorOptions.from_args(args)
    return slurm_executor.slurm_executor(options, folder, name, **parameters)


def announce(job, run_dir: Path) -> None:
    """What the user needs to find and follow the run."""
    (run_dir / "job_id").write_text(f"{job.job_id}\n")
    print(f"submitted job {job.job_id}")
    print(f"  training log: {run_dir / 'train.log'}")
    print(f"  SLURM logs:   {job.paths.stdout}\n                {job.paths.stderr}")
    print(f"  follow:       tail -f {run_dir / 'train.log'}")
    print(f"  status:       xlmr-train --status {job.job_id}   (or --status {run_dir})")


def wait_and_report(jobs: list, run_dirs: list[Path]) -> int:
    """Wait for the jobs; print each one's status, and the error and log of a failed one."""
    retrying_array.wait(jobs, "training")
    failed = 0
    for job, run_dir in zip(jobs, run_dirs):
        result = train_status.read_status(run_dir / "train.log")
        result.state = f"{retrying_array.scheduler_state(job.job_id) or 'ended'} (job {job.job_id})"
        why = retrying_array.failure(job)
        if why is not None:
            failed += 1
            result.error = result.error or _stderr_failure(job) or why
        print("\n".join([f"job {job.job_id}:", *result.lines()]))
        if why is not None:
            print(f"xlmr-train: job {job.job_id} failed: {result.error}\n  see {run_dir / 'train.log'} "
                  f"and {job.paths.stderr}", file=sys.stderr)
    return 1 if failed else 0


def _stderr_failure(job: submitit.Job) -> Optional[str]:
    """The error line of the job's SLURM stderr: what failed before fairseq wrote its log
    (the job itself, or SLURM stopping it)."""
    stderr = Path(job.paths.stderr)
    if not stderr.exists():
        return None
    return fairseq_log.last_failure(stderr.read_text(encoding="utf-8", errors="replace").splitlines())


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    parser = argparse.ArgumentParser(prog="xlmr-train", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Other arguments go to fairseq-train.")
    parser.add_argument("--status", metavar="JOB|RUN_DIR", help="report updates, loss, words/s and the last checkpoint")
    parser.add_argument("--run-dir", type=Path, help="where checkpoints and logs go")
    add_training_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if args.status:
        print("\n".join(train_status.status(args.status).lines()))
        return 0
    if args.data is None or args.run_dir is None:
        parser.error("DATA and --run-dir are required (or --status)")
    if args.executor == "local" and gpus_per_node(args) > local_gpus():
        parser.error(f"--gpus-per-node {args.gpus_per_node}: this machine has {local_gpus()} GPU(s) (--executor local)")
    try:
        run_recipe(args)
    except ValueError as e:
        parser.error(str(e))
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    job = FairseqTrainJob(fairseq_arguments(args, extra, run_dir), world_size(args), run_dir / "train.log")
    if args.executor == "local":
        if gpus_per_node(args) == 0 and world_size(args) > 1:
            parser.error("--executor local trains on CPU with one process")
        job()
        print("\n".join(train_status.read_status(run_dir / "train.log").lines()))
        return 0
    try:
        executor = make_executor(args, run_dir / "slurm", f"xlmr-{run_dir.name}")
        executor.update_parameters(slurm_comment=str(run_dir))
        submitted = executor.submit(job)
        announce(submitted, run_dir)
        return wait_and_report([submitted], [run_dir]) if args.wait else 0
    except retrying_array.NeverStarts as e:
        print(f"xlmr-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
