"""`xlmr-sweep DATA --study schedules`: XLM-R's static recipe against each schedule of the
plugin, and against all of them together, at equal compute.

Every run trains the same model on the same data for the same N updates of the same batch;
what differs is one of

- xlmr:         the paper's recipe: α = 0.3, 15% masking, linear decay after warmup
- alpha_anneal: α 0.7 -> 0.5 -> 0.3 (mmBERT), piecewise-linear with points at 0, N/2, 0.8 N
- unimax:       UniMax (Chung et al. 2023) over the run's token budget, each language at most
                `--unimax-max-epochs` passes (5 unless given), a cap the study checks binds
- mask_anneal:  masking 30% -> 15% (mmBERT) over the first half, 15% after
- wsd:          warmup-stable-decay, 1-sqrt decay over the last 20%
- all:          alpha_anneal + mask_anneal + wsd

times `--seeds`. Each change point is a share of N, written out as an update number.

Equal compute: `--minutes M` first trains the xlmr recipe briefly on one thread at the
highest masking rate any run uses (the dearest updates) and sets N to what fits M minutes at
that speed; every run then gets N and `--stop-time-hours` a quarter above M as a cap. Runs
train on one thread (`--cpus-per-task 1` on SLURM), so wall minutes are CPU-minutes, and each
records its CPU-seconds (`usage.json`). After training, the same job scores the last
checkpoint with `xlmr-eval-ppl` (fixed masking, 15%: the training validation of mask_anneal
would mask at its own rate) and `xlmr-yardstick` on a gettext set (`--yardstick-set`, or one
`xlmr-probe-data --kind gettext` builds into DIR/probe/gettext).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from xlmr.slurm import arguments, fairseq_log, train
from xlmr_plugin.data.language_resampling_dataset import unimax_allocation
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.storage.atomic import atomic_path
from xlmr_plugin.storage.layout import read_stats

logger = logging.getLogger(__name__)

CONFIGS = {  # run name -> the schedules it switches on (LEVERS)
    "xlmr": (),
    "alpha_anneal": ("alpha_anneal",),
    "unimax": ("unimax",),
    "mask_anneal": ("mask_anneal",),
    "wsd": ("wsd",),
    "all": ("alpha_anneal", "mask_anneal", "wsd"),
}
WARMUP = 0.05  # share of the run spent warming up, every run
DECAY = 0.2  # wsd: the last fifth decays
ALPHA_ANNEAL = ((0.0, 0.7), (0.5, 0.5), (0.8, 0.3))  # (share of N, value)
MASK_ANNEAL = ((0.0, 0.3), (0.5, 0.15))
UNIMAX_EPOCHS = 5.0
EPOCHS_PER_RUN = 50  # data schedules move at epoch starts: every 2% of the run
CAP = 1.25  # --stop-time-hours, as a multiple of --minutes
SCORE_MASK = 0.15  # xlmr-eval-ppl's masking, the recipe's
THREADS = 1
MIN_UPDATES = 20


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--seeds", nargs="+", type=int, default=[1], metavar="S",
                       help="schedules: seeds, each config trained once per seed")
    group.add_argument("--minutes", type=float,
                       help="schedules: CPU-minutes per run; N updates are calibrated to fit (else --max-update N)")
    group.add_argument("--calibration-updates", type=int, default=100,
                       help="schedules: updates of the calibration run that measures the speed")
    group.add_argument("--yardstick-set", type=Path,
                       help="schedules: a gettext set of xlmr-probe-data (default: built into DIR/probe/gettext)")


def schedule(points: tuple[tuple[float, float], ...], updates: int) -> str:
    """`points` (share of the run, value) as a piecewise-linear schedule over `updates`."""
    return ",".join(f"{round(share * updates)}:{value:g}" for share, value in points)


def _alpha_anneal(updates: int, _: dict) -> list[tuple[str, str]]:
    return [("multilang-sampling-alpha", schedule(ALPHA_ANNEAL, updates))]


def _mask_anneal(updates: int, _: dict) -> list[tuple[str, str]]:
    return [("mask-prob", schedule(MASK_ANNEAL, updates))]


def _wsd(updates: int, _: dict) -> list[tuple[str, str]]:
    return [("lr-scheduler", "warmup_stable_decay"), ("decay-fraction", f"{DECAY:g}"), ("decay-shape", "1-sqrt")]


def _unimax(updates: int, plan: dict) -> list[tuple[str, str]]:
    return [("language-sampling", "unimax"), ("unimax-max-epochs", f"{plan['unimax_max_epochs']:g}")]


LEVERS: dict[str, Callable[[int, dict], list[tuple[str, str]]]] = {
    "alpha_anneal": _alpha_anneal, "unimax": _unimax, "mask_anneal": _mask_anneal, "wsd": _wsd}


def config_options(config: str, updates: int, plan: dict) -> list[tuple[str, str]]:
    """The fairseq-train options of `config` for a run of `updates`: the recipe, then its schedules."""
    base = RECIPES["base"]
    options = {"multilang-sampling-alpha": f"{base.multilang_sampling_alpha:g}", "mask-prob": f"{base.mask_prob:g}",
               "lr-scheduler": base.lr_scheduler, "language-sampling": "alpha"}
    for lever in CONFIGS[config]:
        options.update(LEVERS[lever](updates, plan))
    return list(options.items())


def blocks_per_update(args: argparse.Namespace, extra: list[str]) -> int:
    recipe = RECIPES[args.preset] if args.preset else None
    batch = arguments.flag_value(extra, "--batch-size") or (recipe.batch_size if recipe else None)
    if batch is None:
        raise ValueError("--study schedules needs --batch-size (or a --preset that has one): the budget is in blocks")
    return int(batch) * int(arguments.flag_value(extra, "--update-freq") or 1) * train.world_size(args)


def tokens_per_sample(args: argparse.Namespace, extra: list[str]) -> int:
    recipe = RECIPES[args.preset] if args.preset else None
    return int(arguments.flag_value(extra, "--tokens-per-sample") or (recipe and recipe.tokens_per_sample) or 512)


def unimax_cap(args: argparse.Namespace, extra: list[str], budget: float) -> tuple[float, list[str]]:
    """The UniMax epoch cap and the languages it binds for at `budget` tokens; an error when none."""
    epochs = float(arguments.flag_value(extra, "--unimax-max-epochs") or UNIMAX_EPOCHS)
    stats = read_stats(args.data)
    langs = (arguments.flag_value(extra, "--langs") or ",".join(sorted(stats))).split(",")
    tokens = [stats[lang]["train_tokens"] for lang in langs]
    allocation = unimax_allocation(tokens, budget, epochs)
    capped = [lang for lang, t, a in zip(langs, tokens, allocation) if a >= epochs * t * (1 - 1e-9)]
    if not capped or len(capped) == len(langs):
        raise ValueError(f"--unimax-max-epochs {epochs:g} binds for {len(capped)} of {len(langs)} languages at a "
                         f"budget of {budget:,.0f} tokens: choose a cap that binds for the small languages only")
    return epochs, capped


def calibrate(args: argparse.Namespace, extra: list[str], sweep_dir: Path) -> dict:
    """Updates per second of the dearest run on one thread, and the N that fits `--minutes`;
    kept in DIR/calibration/calibration.json and reused while the options are the same."""
    run_dir = sweep_dir / "calibration"
    steps = args.calibration_updates
    highest_mask = max(value for _, value in MASK_ANNEAL)
    options = dict(config_options("xlmr", steps, {}))
    options.update({"mask-prob": f"{highest_mask:g}", "max-update": str(steps), "total-num-update": str(steps),
                    "warmup-updates": "1", "log-interval": str(max(1, steps // 10)), "log-format": "json",
                    "seed": str(args.seeds[0])})
    point = [token for option, value in options.items() for token in (f"--{option}", value)]
    argv = train.fairseq_arguments(args, [*extra, *point, "--no-save", "--disable-validation"], run_dir)
    record = run_dir / "calibration.json"
    if record.exists():
        old = json.loads(record.read_text(encoding="utf-8"))
        if old["fairseq_train"] == argv and old["minutes"] == args.minutes:
            logger.info("calibration of %s reused: %.3f updates/s, N = %d", record, old["updates_per_s"], old["updates"])
            return old
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), PYTHONWARNINGS="ignore")
    from xlmr.slurm.fairseq_train_job import fairseq_train_command

    logger.info("calibration: %d updates on %d thread(s)", steps, THREADS)
    proc = subprocess.run(fairseq_train_command() + argv, env=env, capture_output=True, text=True)
    (run_dir / "train.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"the calibration run failed: see {run_dir / 'train.log'}")
    inner = [e.stats for e in fairseq_log.events((proc.stdout + proc.stderr).splitlines())
             if isinstance(e, fairseq_log.Record) and e.tag == "train_inner"]
    if len(inner) < 2:
        raise RuntimeError(f"the calibration run logged {len(inner)} train_inner records: raise --calibration-updates")
    # the intervals after the first record (start-up excluded), each timed by its updates/s: fairseq
    # rounds that to 2 decimals, but its wall clock to whole seconds
    updates = [float(record["num_updates"]) for record in inner]
    seconds = sum((b - a) / float(record["ups"]) for a, b, record in zip(updates, updates[1:], inner[1:]))
    speed = (updates[-1] - updates[0]) / seconds
    result = {"minutes": args.minutes, "threads": THREADS, "updates_per_s": speed,
              "updates": int(speed * args.minutes * 60), "fairseq_train": argv}
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    logger.info("calibration: %.3f updates/s on %d thread(s): N = %d updates in %g minutes",
                speed, THREADS, result["updates"], args.minutes)
    return result


def yardstick_set(args: argparse.Namespace, sweep_dir: Path) -> Path:
    if args.yardstick_set:
        return args.yardstick_set.resolve()
    out = sweep_dir / "probe" / "gettext"
    if not (out / "crosslingual.json").exists():
        from xlmr.downstream import probe_data

        if probe_data.main([str(args.data), "--kind", "gettext", "--out", str(out)]) != 0:
            raise RuntimeError("xlmr-probe-data --kind gettext failed: see its log above")
    return out


def scoring_commands(run_dir: Path, data: Path, probe: Path) -> list[list[str]]:
    """What the run's job does after training: the two yardsticks on checkpoint_last.pt."""
    bin_dir = Path(sys.executable).parent
    checkpoint = str(run_dir / "checkpoints" / "checkpoint_last.pt")
    return [[str(bin_dir / "xlmr-eval-ppl"), checkpoint, str(data), "--dict-dir", str(data), "--cpu",
             "--mask-prob", f"{SCORE_MASK:g}", "--json", str(run_dir / "eval_ppl.json")],
            [str(bin_dir / "xlmr-yardstick"), checkpoint, str(probe), "--data", str(data),
             "--json", str(run_dir / "yardstick.json")]]


def schedule_runs(args: argparse.Namespace, values: list[str], extra: list[str]) -> list:
    """Configs x seeds as StudyRuns (studies.py), all with the same N updates."""
    from xlmr.analysis.studies import StudyRun

    unknown = [v for v in values if v not in CONFIGS]
    if unknown:
        raise ValueError(f"--study-values: unknown schedules {','.join(unknown)}; known: {','.join(CONFIGS)}")
    if "--no-save" in extra or (args.preset and RECIPES[args.preset].no_save):
        raise ValueError("--study schedules scores each run's checkpoint_last.pt: no --no-save (and not "
                         "--preset toy, which has it; --preset demo_paper is the CPU scale)")
    if args.cpus_per_task not in (None, THREADS):
        raise ValueError(f"--cpus-per-task {args.cpus_per_task}: --study schedules trains each run on {THREADS} CPU")
    args.cpus_per_task = THREADS
    if args.minutes:
        plan = calibrate(args, extra, args.sweep_dir)
    elif arguments.flag_value(extra, "--max-update"):
        plan = {"updates": int(arguments.flag_value(extra, "--max-update"))}
    else:
        raise ValueError("--study schedules: give --minutes M (N calibrated to fit) or --max-update N")
    updates = plan["updates"]
    if updates < MIN_UPDATES:
        raise ValueError(f"--study schedules: N = {updates} updates, fewer than {MIN_UPDATES}: raise --minutes")
    blocks = blocks_per_update(args, extra)
    budget = updates * blocks * tokens_per_sample(args, extra)
    if any("unimax" in CONFIGS[v] for v in values):
        plan["unimax_max_epochs"], capped = unimax_cap(args, extra, budget)
        logger.info("unimax: %g epochs at most, binding for %s at a budget of %s tokens",
                    plan["unimax_max_epochs"], ",".join(capped), f"{budget:,}")
        plan["unimax_capped"] = capped
    probe = yardstick_set(args, args.sweep_dir)
    common = [("max-update", str(updates)), ("total-num-update", str(updates)),
              ("warmup-updates", str(max(1, round(WARMUP * updates)))),
              ("epoch-blocks", str(blocks * max(1, round(updates / EPOCHS_PER_RUN)))),
              ("validate-interval", "1000000"), ("validate-interval-updates", "0"),
              ("save-interval", "1000000"), ("save-interval-updates", str(max(1, updates // 4))),
              ("keep-interval-updates", "1"), ("log-format", "json")]
    if args.minutes:
        common.append(("stop-time-hours", f"{CAP * args.minutes / 60:.6g}"))
    runs = []
    for config in values:
        for seed in args.seeds:
            name = f"{config},seed={seed}"
            meta = {"x": config, "config": config, "seed": seed, "threads": THREADS, "minutes": args.minutes,
                    "budget_tokens": budget, **{k: v for k, v in plan.items() if k != "fairseq_train"}}
            options = [*common, ("seed", str(seed)), *config_options(config, updates, plan)]
            after = scoring_commands(args.sweep_dir / name, Path(args.data).resolve(), probe)
            runs.append(StudyRun(name, args.data, options, meta, after=after, threads=THREADS))
    return runs
