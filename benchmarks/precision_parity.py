"""Precision parity: a few training steps of the plugin model in fp32, bf16 and fp16 (fp16
on GPU only), of stock fairseq in fp16 and of Hugging Face under bf16 autocast, from the
same weights on the same batches, against the plugin in fp32; and which SDPA kernel the
plugin's attention ran (flash on batches without padding), with a profiler table of the
top kernels of one bf16 step.

    python benchmarks/precision_parity.py --json parity.json               # GPU: xlmr_base, 512 tokens
    python benchmarks/precision_parity.py --device cpu --layers 1 --width 64 --tokens-per-sample 64 --batch-size 2

Tolerances: each step's loss within ``--loss-rtol`` (2%) and gradient norm within
``--gnorm-rtol`` (10%) of fp32's. bf16 keeps 8 significant bits (2^-8 = 0.4% per
rounding), fp16 11 with loss scaling; from identical weights a few steps apart the losses
differ by rounding only, while a broken path (lost master weights, an fp16 overflow
skipped, a wrong mask) misses by far more. Dropout is off so that the systems compute
the same function.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from fairseq.logging import metrics  # noqa: E402

from train_systems import (  # noqa: E402
    FairseqSystem, HFSystem, Workload, epoch_batches, fairseq_args, plugin_args, stock_args,
)
from train_throughput import VOCAB, write_data  # noqa: E402
from xlmr_plugin.models.shapes import SHAPES, Shape  # noqa: E402

# the plugin's levers that change no numerics beyond rounding (fused_ce and compile change the order of sums)
PARITY_LEVERS = ["sdpa", "fused_adamw", "no_lang_sync"]
ATTENTION_KERNELS = ("flash", "fmha", "efficient_attention", "scaled_dot_product", "cudnn_attention",
                     "explicit_attention")


def fairseq_steps(system: FairseqSystem, batches: List[dict]) -> Dict[str, list]:
    """Per step: the loss (nats per masked token) and the gradient norm fairseq logs."""
    losses, norms = [], []
    for sample in batches:
        with metrics.aggregate(new_root=True) as agg:
            loss = system.step(sample)
            stats = agg.get_smoothed_values()
        losses.append(None if loss is None else round(loss(), 5))
        norms.append(round(float(stats["gnorm"]), 5) if "gnorm" in stats else None)
    return {"loss": losses, "gnorm": norms}


def hf_steps(system: HFSystem, batches: List[dict]) -> Dict[str, list]:
    losses, norms = [], []
    for sample in batches:
        tokens = sample["net_input"]["src_tokens"].to(system.device)
        target = sample["target"].to(system.device)
        with system.autocast:
            loss = system.model(input_ids=tokens, attention_mask=tokens.ne(1),
                                labels=target.masked_fill(target.eq(1), -100)).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(system.model.parameters(), float("inf"))
        system.optimizer.step()
        system.optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss), 5))
        norms.append(round(float(norm), 5))
    return {"loss": losses, "gnorm": norms}


def attention_kernels(system: FairseqSystem, sample: dict, device: str) -> Dict[str, object]:
    """One profiled training step: the attention kernels that ran and the top-15 table."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        system.step(sample)
        if device == "cuda":
            torch.cuda.synchronize()
    names = sorted({e.key for e in prof.key_averages() if any(k in e.key.lower() for k in ATTENTION_KERNELS)})
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return {"attention_kernels": names, "flash": any("flash" in n.lower() for n in names),
            "profile_table": prof.key_averages().table(sort_by=sort, row_limit=15)}


def compare(reference: Dict[str, list], other: Dict[str, list], loss_rtol: float, gnorm_rtol: float) -> dict:
    def worst(key: str) -> Optional[float]:
        pairs = [(a, b) for a, b in zip(reference[key], other[key]) if a is not None and b is not None]
        return max(abs(b - a) / abs(a) for a, b in pairs) if pairs else None

    loss, gnorm = worst("loss"), worst("gnorm")
    ok = loss is not None and loss <= loss_rtol and (gnorm is None or gnorm <= gnorm_rtol)
    return {"max_loss_rel_diff": loss, "max_gnorm_rel_diff": gnorm, "within_tolerance": ok}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", choices=["large", "base"], default="base")
    for name in ("layers", "width", "heads", "ffn"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--tokens-per-sample", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--loss-rtol", type=float, default=0.02)
    p.add_argument("--gnorm-rtol", type=float, default=0.10)
    p.add_argument("--work-dir", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    shape = SHAPES[f"xlmr_{args.arch}"]
    for key in ("layers", "width", "heads", "ffn"):
        if getattr(args, key) is None:
            setattr(args, key, getattr(shape, key))
    args.work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="xlmr-parity-"))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    gpu = args.device == "cuda"
    workload = Workload(Shape(args.layers, args.width, args.heads, args.ffn), VOCAB, args.tokens_per_sample,
                        args.batch_size)
    data = write_data(args.work_dir, VOCAB, (args.steps + 6) * args.batch_size * args.tokens_per_sample, 1)
    common = fairseq_args(str(data), workload, args.device, 0, 1, str(args.work_dir / "checkpoints"))
    # blocks filled across lines and documents, so that batches without padding (flash's) are the rule
    common += ["--dropout", "0.0", "--attention-dropout", "0.0", "--sample-break-mode", "none"]
    reference = FairseqSystem(common + plugin_args(PARITY_LEVERS, args.device))
    init = {k: v.detach().cpu().clone() for k, v in reference.model.state_dict().items()}
    task = reference.task
    pad = task.source_dictionary.pad()
    batches = [b for b in epoch_batches(task, reference.cfg, workload)
               if not b["net_input"]["src_tokens"].eq(pad).any()][: args.steps + 1]
    builders = {
        "plugin-bf16": lambda: FairseqSystem(common + plugin_args(PARITY_LEVERS + ["bf16"], args.device), task, init),
        "plugin-fp16": lambda: FairseqSystem(common + plugin_args(PARITY_LEVERS, args.device) + ["--fp16"], task, init),
        "fairseq-fp16": lambda: FairseqSystem(common + stock_args(args.device), task, init),
        "hf-bf16": lambda: HFSystem(workload, init, args.device, dropout=0.0),
    }
    if not gpu:  # fairseq's fp16 needs CUDA; HF's autocast is GPU-only in HFSystem
        builders = {"plugin-bf16": builders["plugin-bf16"]}
    runs = {"plugin-fp32": fairseq_steps(reference, batches[: args.steps])}
    del reference
    out: Dict[str, dict] = {}
    for name, build in builders.items():
        try:
            system = build()
            runs[name] = (hf_steps if name.startswith("hf") else fairseq_steps)(system, batches[: args.steps])
            if name == "plugin-bf16":
                out["sdpa"] = attention_kernels(system, batches[args.steps], args.device)
            del system
        except Exception as e:  # one failing path is a result, not the end of the check
            runs[name] = {"error": f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:500]}"}
        if gpu:
            torch.cuda.empty_cache()
    comparisons = {name: compare(runs["plugin-fp32"], run, args.loss_rtol, args.gnorm_rtol)
                   for name, run in runs.items() if name != "plugin-fp32" and "error" not in run}
    for name, run in runs.items():
        print(f"{name:<14} {run}", flush=True)
    for name, c in comparisons.items():
        print(f"{name:<14} vs plugin-fp32: {c}", flush=True)
    if "sdpa" in out:
        print("attention kernels:", out["sdpa"]["attention_kernels"], flush=True)
    figures = {
        "device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
        "workload": {"layers": args.layers, "width": args.width, "tokens_per_sample": args.tokens_per_sample,
                     "batch_size": args.batch_size}, "steps": args.steps,
        "tolerances": {"loss_rtol": args.loss_rtol, "gnorm_rtol": args.gnorm_rtol},
        "runs": runs, "comparisons": comparisons, **out,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
