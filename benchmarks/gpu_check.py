"""The GPU check: one command that proves and measures the plugin on a lent GPU machine in
under nine minutes, each step time-boxed, one JSON per step written as soon as the step
ends, so that a failed or slow step costs only itself.

    bash benchmarks/gpu_check.sh                 # on the GPU machine: results into $OUT
    bash benchmarks/gpu_check.sh --dry-run       # on CPU, tiny shapes: the same steps (make test)

Steps: ``env`` (GPU, torch, CUDA, packages, compiler: what the compile lever needs),
``parity`` (benchmarks/precision_parity.py), ``throughput_large`` and ``throughput_base``
(benchmarks/train_throughput.py, plugin bf16 on packed blocks against stock fairseq --fp16 and
HF on complete ones at 512 tokens, one round; ``throughput_base`` also runs the plugin on
complete blocks, whose ``packing`` figures hold the packed lever's gain beside the unfilled
share of the slots it removes), ``sweep_large_b32`` and ``sweep_large_b64`` (the plugin alone at larger
batches: MFU depends on the batch). Each runs in its own process under its time box; the
JSON of each holds its status (ok, failed, timed_out), seconds, command, the step's own
figures and the end of its log. The lent machine returns at most 8 files from $OUT: six
JSON, ``gpu_check.log`` (every step's output) and ``summary.json``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 540  # the machine's 9 minutes of wall time, of which the wheel install takes the first seconds
PACKAGES = ("fairseq", "fairseq-fixed", "torch", "numpy", "transformers", "triton", "omegaconf", "hydra-core",
            "sentencepiece", "submitit")


@dataclass(frozen=True)
class Step:
    """One time-boxed step: a benchmark script and its arguments, on GPU and in the dry run."""

    name: str
    seconds: int  # the box on GPU; the dry run's box is DRY_RUN_S
    script: str
    gpu_args: List[str]
    dry_args: List[str] = field(default_factory=list)


TINY = ["--device", "cpu", "--layers", "1", "--width", "64", "--heads", "4", "--ffn", "256",
        "--tokens-per-sample", "64", "--batch-size", "2"]
THROUGHPUT_TINY = TINY + ["--warmup", "1", "--steps", "2", "--rounds", "1", "--num-workers", "0"]
STEPS = [
    Step("parity", 75, "precision_parity.py", ["--arch", "base", "--batch-size", "8", "--steps", "4"],
         TINY + ["--steps", "2"]),
    Step("throughput_large", 150, "train_throughput.py",
         ["--arch", "large", "--batch-size", "16", "--warmup", "8", "--steps", "15", "--rounds", "1"],
         THROUGHPUT_TINY),
    Step("throughput_base", 150, "train_throughput.py",
         ["--arch", "base", "--batch-size", "32", "--warmup", "8", "--steps", "15", "--rounds", "1",
          "--ablate", "packed"], THROUGHPUT_TINY + ["--ablate", "packed"]),
    Step("sweep_large_b32", 60, "train_throughput.py",
         ["--arch", "large", "--systems", "plugin", "--batch-size", "32", "--warmup", "6", "--steps", "10",
          "--rounds", "1"], THROUGHPUT_TINY + ["--systems", "plugin"]),
    Step("sweep_large_b64", 60, "train_throughput.py",
         ["--arch", "large", "--systems", "plugin", "--batch-size", "64", "--warmup", "6", "--steps", "8",
          "--rounds", "1"], THROUGHPUT_TINY + ["--systems", "plugin", "--batch-size", "4"]),
]
ENV_S = 30
DRY_RUN_S = 90


def environment() -> Dict[str, object]:
    """What ran: the GPU and its driver, torch and CUDA, the packages, and what the compile
    lever needs (a C compiler and Python's headers), before any step depends on them."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.is_available()
    smi = shutil.which("nvidia-smi")
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name() if gpu else None,
        "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if gpu else None,
        "driver": subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True).stdout.strip() if smi else None,
        "c_compiler": shutil.which("cc") or shutil.which("gcc"),
        "python_headers": (Path(sysconfig.get_paths()["include"]) / "Python.h").exists(),
        "packages": versions,
    }


def run_step(step: Step, out: Path, dry_run: bool, deadline: float, log) -> dict:
    """Run ``step`` under its box (or what is left of the budget); its JSON, whatever happened."""
    figures = out / f"{step.name}.figures.tmp"
    args = step.dry_args if dry_run else step.gpu_args
    cmd = [sys.executable, str(ROOT / "benchmarks" / step.script), *args, "--json", str(figures)]
    box = DRY_RUN_S if dry_run else min(step.seconds, max(1, int(deadline - time.monotonic())))
    record = {"step": step.name, "command": " ".join(cmd[1:]), "time_box_s": box}
    start = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=box, env=env)
        output, record["returncode"] = proc.stdout + proc.stderr, proc.returncode
        record["status"] = "ok" if proc.returncode == 0 and figures.exists() else "failed"
    except subprocess.TimeoutExpired as e:
        output = _text(e.stdout) + _text(e.stderr)
        record["status"] = "timed_out"
    record["seconds"] = round(time.monotonic() - start, 1)
    if figures.exists():
        record["figures"] = json.loads(figures.read_text())
        figures.unlink()
    kept = [line for line in output.splitlines() if "INFO" not in line and "Warning" not in line]
    record["log_tail"] = kept[-40:]
    log.write(f"===== {step.name}: {record['status']} in {record['seconds']} s\n{output}\n")
    log.flush()
    (out / f"{step.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{step.name:<18} {record['status']:<9} {record['seconds']:>6.1f} s  (box {box} s)", flush=True)
    return record


def _text(raw) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="one JSON per step goes here ($OUT on the GPU machine)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: the same steps, minutes not hours")
    p.add_argument("--steps", help=f"comma-separated subset of {','.join(s.name for s in STEPS)}")
    args = p.parse_args(argv)
    chosen = [s for s in STEPS if not args.steps or s.name in args.steps.split(",")]
    if args.steps and len(chosen) != len(args.steps.split(",")):
        p.error(f"--steps: known steps are {','.join(s.name for s in STEPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUDGET_S - ENV_S
    env = {"step": "env", "command": " ".join(["python", "benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
           "dry_run": args.dry_run, **environment()}
    (args.out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
    print(json.dumps(env, indent=1), flush=True)
    if not args.dry_run and not env["gpu"]:
        print("gpu_check: no CUDA GPU here; --dry-run runs the same steps on CPU", file=sys.stderr)
        return 2
    with open(args.out / "gpu_check.log", "w") as log:
        records = [run_step(step, args.out, args.dry_run, deadline, log) for step in chosen]
    summary = {r["step"]: {"status": r["status"], "seconds": r["seconds"]} for r in records}
    (args.out / "summary.json").write_text(json.dumps({"env": env, "steps": summary}, indent=1) + "\n")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
