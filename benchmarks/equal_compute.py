"""Equal compute on CPU: stock fairseq ``multilingual_masked_lm`` against the plugin with its
CPU levers, each training for the same minutes on the same binarized data, both scored by
``xlmr-eval-ppl`` (fixed masking, bits per masked token) on the valid splits.

    python benchmarks/equal_compute.py DATA --minutes 6 \\
        --json benchmarks/results/equal_compute_cpu2.json --md benchmarks/results/equal_compute_cpu2.md

DATA is an ``xlmr-prepare`` output with one train shard per language (stock fairseq reads
``<lang>/train`` only). Both systems train the same model (``--layers`` x ``--width``, GELU,
post-norm), the same batch of ``--batch-size`` blocks of ``--tokens-per-sample`` tokens,
optimiser, learning-rate schedule, seed and language sampling (alpha 0.3); what differs is
the plugin's task and levers (``--plugin-levers``). Runs alternate (stock, plugin, plugin,
stock, ...) so that drift in the machine's load falls on both; each stops after ``--minutes``
of fairseq's own training clock (``--stop-time-hours``), with the same number of threads.

With ``--plan`` each system instead plans its schedules for the minutes from its own speed,
as a researcher with a budget of minutes would: a calibration run of ``--calibration-updates``
(with the run's own arguments, masking at the mean rate of the plugin's mask anneal) measures
its steady updates per second (after the first log interval), and its run then spreads its
linear decay (stock) or its schedules (the plugin's ``mask_anneal`` and ``wsd`` levers too)
over rate x minutes updates, stopping there or at the minutes, whichever comes first.

With ``--plugin-updates N`` the plugin instead trains exactly N updates, so that schedules
over the run end where they should, and stock fairseq then trains for the seconds the plugin
took, on fairseq's same training clock (``previous_training_time`` of the plugin's last
checkpoint as stock's ``--stop-time-hours``), its linear decay over the same N updates; each
repeat runs the plugin first. This mode also allows the plugin's schedule levers
(``mask_anneal``, ``wsd``: the ``demo`` recipe's anneals, rescaled to N updates).

The headline figures: real (non-padding) tokens per second over the run, the updates made,
and the mean over languages of each language's bits per masked token (the issue's measure;
``all`` pools the masked tokens of every language and weights the large ones).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from machine import processor
from xlmr.slurm import fairseq_log
from xlmr_plugin.data.update_schedule import UpdateSchedule, rescaled
from xlmr_plugin.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# lever name -> the plugin's fairseq-train arguments (what --plugin-levers switches on)
PLUGIN_LEVERS: Dict[str, List[str]] = {
    "packed": ["--sample-break-mode", "packed"],
    "bf16": ["--bf16"],
    "fused_adamw": ["--optimizer", "fused_adamw"],
    "no_lang_sync": ["--no-train-language-metrics"],
}
# lever name -> its arguments for a run of N updates: the demo recipe's anneals, rescaled
SCHEDULE_LEVERS = ("mask_anneal", "wsd")


def schedule_lever_args(lever: str, updates: int, batch_size: int) -> List[str]:
    demo = RECIPES["demo"]
    if lever == "wsd":
        return ["--lr-scheduler", "warmup_stable_decay", "--decay-fraction", str(demo.decay_fraction),
                "--decay-shape", demo.decay_shape]
    points = rescaled(demo.mask_prob, updates / demo.max_update, "--mask-prob")
    # the mask rate moves at epoch starts: as many epochs per run as the demo has
    epochs = demo.max_update * demo.batch_size // demo.epoch_blocks
    return ["--mask-prob", points, "--epoch-blocks", str(max(1, updates // epochs) * batch_size)]


def shared_args(data: Path, args: argparse.Namespace, updates: int, stop_seconds: Optional[float] = None) -> List[str]:
    """What both systems train: model size, batch, optimiser, schedule over ``updates``, sampling,
    seed, and when they stop: at ``updates``, or earlier after ``stop_seconds`` of training
    (default ``--minutes``; none for the plugin of ``--plugin-updates``)."""
    stop = ["--stop-time-hours", str((stop_seconds or args.minutes * 60) / 3600)] if stop_seconds or \
        not args.plugin_updates else []
    return [
        str(data), "--cpu", "--seed", str(args.seed), "--num-workers", "0",
        "--encoder-layers", str(args.layers), "--encoder-embed-dim", str(args.width),
        "--encoder-attention-heads", str(args.width // 64), "--encoder-ffn-embed-dim", str(4 * args.width),
        "--dropout", "0.0", "--attention-dropout", "0.0",
        "--tokens-per-sample", str(args.tokens_per_sample), "--batch-size", str(args.batch_size),
        "--required-batch-size-multiple", "1", "--multilang-sampling-alpha", "0.3", "--mask-prob", "0.15",
        "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01", "--clip-norm", "0.0",
        "--lr", str(args.lr), "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(args.warmup),
        "--total-num-update", str(updates), "--max-update", str(updates), *stop,
        "--disable-validation", "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "20",
    ]


def system_args(name: str, levers: List[str], args: argparse.Namespace, updates: int) -> List[str]:
    if name == "stock":
        return ["--task", "multilingual_masked_lm", "--arch", "roberta_base", "--criterion", "masked_lm",
                "--optimizer", "adam", "--sample-break-mode", "complete"]
    argv = ["--user-dir", str(ROOT / "xlmr_plugin"), "--task", "xlmr_mlm", "--arch", "xlmr_base",
            "--criterion", "xlmr_masked_lm"]
    if "packed" not in levers:
        argv += ["--sample-break-mode", "complete"]
    if "fused_adamw" not in levers:
        argv += ["--optimizer", "adam"]
    for lever in levers:
        argv += schedule_lever_args(lever, updates, args.batch_size) if lever in SCHEDULE_LEVERS \
            else PLUGIN_LEVERS[lever]
    return argv


def train_speed(log: str) -> Dict[str, float]:
    """Real tokens/s over the run from fairseq's JSON ``train`` records (one per epoch, the
    last one for the epoch the clock stopped: the tokens and updates per second of each),
    and the updates made."""
    records = [record.stats for record in fairseq_log.records(log.splitlines(), "train")]
    if not records:
        raise RuntimeError("no train record in the log:\n" + log[-3000:])
    tokens = seconds = 0.0
    previous = 0
    for record in records:
        updates = int(record["num_updates"]) - previous
        previous = int(record["num_updates"])
        interval = updates / float(record["ups"])
        tokens += float(record["wps"]) * interval
        seconds += interval
    return {"updates": previous, "real_tokens_per_s": tokens / seconds, "updates_per_s": previous / seconds,
            "train_loss_last": float(records[-1]["loss"]), "epochs": len(records)}


def training_seconds(save_dir: Path) -> float:
    """fairseq's training clock at the run's end (what ``--stop-time-hours`` compares with)."""
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    return float(state["extra_state"]["previous_training_time"])


def fairseq_train(name: str, data: Path, args: argparse.Namespace, levers: List[str], updates: int,
                  stop_seconds: Optional[float] = None) -> List[str]:
    return [str(BIN / "fairseq-train"), *shared_args(data, args, updates, stop_seconds),
            *system_args(name, levers, args, updates)]


def calibration_argv(name: str, data: Path, args: argparse.Namespace, levers: List[str], work: Path) -> List[str]:
    """A run of ``--calibration-updates`` with ``name``'s own arguments (schedules planned for
    ``--total-updates``), masking at the run's mean rate where the ``mask_anneal`` lever anneals it:
    the LM head and its softmax run on masked positions only, so an update's time is affine in the
    mask rate and the run's mean pace is the pace at its mean rate, not at the 30% of its start."""
    argv = [*fairseq_train(name, data, args, levers, args.total_updates), "--max-update", str(args.calibration_updates),
            "--no-save", "--save-dir", str(work / f"{name}_calibration")]
    if name == "plugin" and "mask_anneal" in levers:
        schedule = schedule_lever_args("mask_anneal", args.total_updates, args.batch_size)[1]
        argv += ["--mask-prob", f"{UpdateSchedule.parse(schedule, '--mask-prob').mean(args.total_updates):.4f}"]
    return argv


def planned_updates(name: str, data: Path, args: argparse.Namespace, levers: List[str], work: Path) -> int:
    """The updates ``name`` makes in ``--minutes`` at the steady speed of its calibration run."""
    proc = subprocess.run(calibration_argv(name, data, args, levers, work), cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}'s calibration failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return int(steady_updates_per_s(proc.stdout + proc.stderr) * args.minutes * 60)


def steady_updates_per_s(log: str) -> float:
    """Updates per second over fairseq's ``train_inner`` records after the first (start-up and
    first steps left out, as one reads a speed off a log)."""
    records = [record.stats for record in fairseq_log.records(log.splitlines(), "train_inner")]
    if len(records) < 2:
        raise RuntimeError("the calibration logged fewer than two train_inner records; raise "
                           "--calibration-updates:\n" + log[-3000:])
    updates = [int(b["num_updates"]) - int(a["num_updates"]) for a, b in zip(records, records[1:])]
    return sum(updates) / sum(n / float(r["ups"]) for n, r in zip(updates, records[1:]))


def run_system(name: str, data: Path, args: argparse.Namespace, levers: List[str], work: Path,
               stop_seconds: Optional[float] = None) -> Dict:
    save_dir = work / name
    if save_dir.exists():  # fairseq would resume from it, and stock fairseq cannot load its own checkpoints on torch >= 2.6
        raise FileExistsError(f"{save_dir} exists: give --work-dir a new folder")
    updates = args.plugin_updates or (planned_updates(name, data, args, levers, work) if args.plan
                                      else args.total_updates)
    argv = [*fairseq_train(name, data, args, levers, updates, stop_seconds), "--save-dir", str(save_dir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = {"system": name, "command": argv, "planned_updates": updates, "wall_s": wall,
              "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
              "training_s": training_seconds(save_dir), **train_speed(proc.stdout + proc.stderr)}
    scores = work / f"{name}_ppl.json"
    proc = subprocess.run([str(BIN / "xlmr-eval-ppl"), str(save_dir / "checkpoint_last.pt"), str(data),
                           "--dict-dir", str(data), "--cpu", "--json", str(scores)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"xlmr-eval-ppl of {name} failed:\n{proc.stderr[-3000:]}")
    table = json.loads(scores.read_text())
    langs = [lang for lang in table if lang != "all"]
    result["bits_per_lang"] = {lang: table[lang]["loss"] for lang in langs}
    result["bits_mean_over_langs"] = statistics.mean(result["bits_per_lang"].values())
    result["bits_all"] = table["all"]["loss"]
    return result


def summarize(runs: List[Dict]) -> Dict:
    by_system: Dict[str, Dict] = {}
    for name in ("stock", "plugin"):
        mine = [r for r in runs if r["system"] == name]
        by_system[name] = {key: statistics.mean(r[key] for r in mine)
                           for key in ("updates", "real_tokens_per_s", "bits_mean_over_langs", "bits_all", "cpu_s",
                                     "training_s")}
        by_system[name]["bits_mean_over_langs_range"] = [min(r["bits_mean_over_langs"] for r in mine),
                                                         max(r["bits_mean_over_langs"] for r in mine)]
    stock, plugin = by_system["stock"], by_system["plugin"]
    return {"systems": by_system,
            "tokens_per_s_ratio": plugin["real_tokens_per_s"] / stock["real_tokens_per_s"],
            "bits_below_stock": stock["bits_mean_over_langs"] - plugin["bits_mean_over_langs"]}


def markdown(summary: Dict, args: argparse.Namespace, levers: List[str]) -> str:
    rows = ["| system | updates | training s | real tokens/s | CPU s | bits/masked token, mean over languages (range) "
            "| all |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summary["systems"].items():
        low, high = s["bits_mean_over_langs_range"]
        label = "stock multilingual_masked_lm" if name == "stock" else f"plugin ({', '.join(levers) or 'no levers'})"
        rows.append(f"| {label} | {s['updates']:.0f} | {s['training_s']:.0f} | {s['real_tokens_per_s']:.0f} | "
                    f"{s['cpu_s']:.0f} | "
                    f"{s['bits_mean_over_langs']:.3f} ({low:.3f}-{high:.3f}) | {s['bits_all']:.3f} |")
    rows.append("")
    budget = (f"the plugin {args.plugin_updates} updates, stock fairseq the seconds they took" if args.plugin_updates
              else f"{args.minutes:g} minutes of training each" + (", schedules planned for them at each "
                                                                   "system's calibrated speed" if args.plan else ""))
    rows.append(f"{budget}, {args.repeats} run(s) per system; plugin / stock real "
                f"tokens per second: {summary['tokens_per_s_ratio']:.2f}x; plugin below stock: "
                f"{summary['bits_below_stock']:.3f} bits per masked token (mean over languages).")
    return "\n".join(rows) + "\n"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="xlmr-prepare output, one train shard per language")
    parser.add_argument("--minutes", type=float, default=6.0, help="training minutes per run (fairseq's clock)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per system, alternating order")
    parser.add_argument("--plugin-levers", default="packed,bf16,fused_adamw,no_lang_sync",
                        help=f"comma-separated, of {', '.join(PLUGIN_LEVERS)}; empty: the plain plugin")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--tokens-per-sample", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--total-updates", type=int, default=4000, help="end of the linear decay (and a cap), "
                        "unless --plan")
    parser.add_argument("--plan", action="store_true", help="each system plans its schedules for --minutes at its "
                        "speed in a calibration run")
    parser.add_argument("--calibration-updates", type=int, default=150, help="the calibration run's updates (--plan)")
    parser.add_argument("--plugin-updates", type=int, help="the plugin trains this many updates (its schedules "
                        "end there), stock fairseq for the seconds that took (--minutes is then unused)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, help="keep the runs' checkpoints and scores here (default: a "
                        "temporary folder, removed)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)
    if not (args.data / "dict.txt").is_file():
        parser.error(f"DATA: {args.data} has no dict.txt (run xlmr-prepare first)")
    if args.width % 64:
        parser.error(f"--width must be a multiple of 64 (heads of 64), got {args.width}")
    known = [*PLUGIN_LEVERS, *SCHEDULE_LEVERS]
    levers = [lever for lever in args.plugin_levers.split(",") if lever]
    unknown = [lever for lever in levers if lever not in known]
    if unknown:
        parser.error(f"--plugin-levers: unknown {','.join(unknown)}; known: {','.join(known)}")
    if set(levers) & set(SCHEDULE_LEVERS) and not (args.plugin_updates or args.plan):
        parser.error(f"--plugin-levers {','.join(SCHEDULE_LEVERS)}: schedules over the run need --plan or "
                     "--plugin-updates N")
    if args.plan and args.plugin_updates:
        parser.error("--plan and --plugin-updates: choose one (minutes for both, or the plugin's updates)")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    levers = [lever for lever in args.plugin_levers.split(",") if lever]
    # the plugin first where stock's seconds are the plugin's; else alternating, so that drift
    # in the machine's load falls on both
    order = [("plugin", "stock")] if args.plugin_updates else [("stock", "plugin"), ("plugin", "stock")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="equal_compute_") as tmp:
        for repeat in range(args.repeats):
            for name in order[repeat % len(order)]:
                work = (args.work_dir or Path(tmp)) / f"run{repeat}"
                work.mkdir(parents=True, exist_ok=True)
                stop = runs[-1]["training_s"] if args.plugin_updates and name == "stock" else None
                runs.append(run_system(name, args.data.resolve(), args, levers, work, stop))
                print(f"{name}: {runs[-1]['updates']} updates, {runs[-1]['real_tokens_per_s']:.0f} real tokens/s, "
                      f"{runs[-1]['bits_mean_over_langs']:.3f} bits (mean over languages)", flush=True)
    summary = summarize(runs)
    text = markdown(summary, args, levers)
    print(text)
    command = "python benchmarks/equal_compute.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "processor": processor(),
                                         "threads": os.environ.get("OMP_NUM_THREADS"),
                                         "summary": summary, "runs": runs}, indent=2) + "\n")
    if args.md:
        args.md.write_text(f"Command: `{command}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
