"""Training throughput: our plugin against stock fairseq and Hugging Face, in one process,
on the same batches and starting weights.

    python benchmarks/train_throughput.py --json benchmarks/results/train_throughput_h100_large.json  # GPU
    python benchmarks/train_throughput.py --device cpu      # a small configuration, 250,002 vocabulary
    ... --levers fuse_qkv,fused_ce | none   --ablate (each lever off in turn)   --ablate packed   --find-max-batch

Each system takes ``--warmup`` untimed steps, then ``--steps`` timed ones. On GPU
(``--schedule rounds``) each system runs alone, freshly built, in ``--rounds`` rounds of
alternating order (A B C, C B A); on CPU (``--schedule interleaved``) all systems stay
alive and take one step each in turn, so that the load of a shared machine falls on all
alike. Only batches of the full batch size are timed (train_systems.epoch_batches).
The headline is real tokens/s (non-padding tokens: what a model learns from), beside the
padding share of the batches each system read (pad slots of the batch tensors), the
unfilled share (slots of batch_size x tokens_per_sample holding no real token: complete
blocks' short rows and their padding) and tokens/s over all slots; model FLOPs
utilisation counts real tokens (FLOPs per token as the issue counts them: 6 N_encoder +
12 L d s + 0.15 * 6 (d^2 + d V)); then peak memory, the time the loop waited for the
data loader, steps fairseq skipped (fp16 overflow, recovered OOM), the loss, and the
ratios between systems; with the plugin both packed and not (``--ablate``), the packed
lever's gain beside the unfilled share it removes. A system that fails (out of memory, a kernel that does not
build) is reported with its error and the others are still measured; a lever that
cannot run here (compile without a compiler, bf16 on a CPU without bf16 units) is
dropped before any system is built, with the reason in the output and the JSON.
What the systems are and what differs between them: benchmarks/train_systems.py.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from machine import processor  # noqa: E402
from train_systems import (  # noqa: E402
    CPU_LEVERS, DEFAULT_LEVERS, LEVERS, REQUIRES, FairseqSystem, HFSystem, Workload, epoch_batches, fairseq_args,
    plugin_args, stock_args, training_cfg, training_task, unavailable_levers, without,
)
from xlmr_plugin.models.shapes import SHAPES, Shape  # noqa: E402
from xlmr_plugin.storage import layout  # noqa: E402

VOCAB = 250_002
CPU_SHAPE = Shape(2, 256, 4, 1024)  # small enough for a shared CPU, beside the full vocabulary
# what measures the GPU figures within one lent GPU machine's minutes (benchmarks/gpu_check.py)
GPU_COMMAND = "bash benchmarks/gpu_check.sh"
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
DIFFERENCES = [
    "plugin: bf16 weights + fp32 master copy (fairseq --bf16); stock fairseq: fp16 weights + fp32 master copy "
    "with dynamic loss scaling (--fp16); HF: fp32 weights under bf16 autocast",
    "stock fairseq's optimizer is fairseq's 'adam' (apex FusedAdam if apex imports, else its per-parameter loop); "
    "the plugin's is fused_adamw; HF's torch.optim.AdamW(fused=True)",
    "plugin and stock fairseq run the LM head on masked positions only; HF's XLMRobertaForMaskedLM on every position",
    "all three read the batches of xlmr_mlm tasks (the task only reads data) over the same data, seed and batch "
    "size, and start from the same weights; dropout 0.1 everywhere",
    "stock fairseq, HF and the plugin without the packed lever read complete blocks (whole lines, batched by size); "
    "the plugin with it packed blocks, whose pieces only its model keeps apart (positions and attention)",
    "on CPU: the plugin in bf16 (fp32 master weights) where the processor has bf16 matrix units, stock fairseq "
    "and HF in fp32",
]


# Line and document lengths of the synthetic text, as ../shared/corpus/mono prepared with
# SentencePiece has them (en, de, ja, ru): tokens per line with its </s> about log-normal,
# e^N(3.7, 0.82) (median 40), documents of 25 lines on average. complete blocks then leave
# 24%, 23% and 11% of their slots empty at 64, 128 and 512 tokens (the corpus: 24%, 24%, 10%)
LINE_LOG_TOKENS = (3.7, 0.82)
DOCUMENT_LINES = 25


def write_data(work: Path, vocab: int, tokens: int, seed: int) -> Path:
    """A DEST of random token ids over a ``vocab``-symbol dictionary (xlmr_mlm appends <mask>),
    as xlmr-prepare lays text out: a line per item ending in </s>, documents apart by an
    empty line's lone </s>, which is where packed blocks find a document's end. The lengths
    are the real corpus's, so that complete blocks leave real text's slack for packing to take."""
    from fairseq.data import indexed_dataset

    dest = work / f"documents_v{vocab}_{tokens}_{seed}"
    if (dest / "xx" / "train.idx").exists():
        return dest
    (dest / "xx").mkdir(parents=True, exist_ok=True)
    # 4 specials + entries + <mask> = vocab
    (dest / layout.DICT).write_text("".join(f"w{i} 1\n" for i in range(vocab - 5)))
    rng = np.random.default_rng(seed)
    eos = torch.tensor([2], dtype=torch.int32)
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(dest / "xx" / "train.bin"), dtype=np.int32)
    written = 0
    while written < tokens:
        for size in np.maximum(2, np.rint(rng.lognormal(*LINE_LOG_TOKENS, rng.geometric(1 / DOCUMENT_LINES)))):
            line = rng.integers(4, vocab - 1, size=int(size), dtype=np.int32)
            line[-1] = 2  # </s>
            builder.add_item(torch.from_numpy(line))
            written += len(line)
        builder.add_item(eos)  # the empty line after a document
        written += 1
    builder.finalize(str(dest / "xx" / "train.idx"))
    return dest


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process max RSS (KB -> GB)


class Meter:
    """One system's timed steps: time, data wait, real (non-padding) and slot tokens, skips."""

    def __init__(self, name: str):
        self.name = name
        self.time = self.wait = 0.0
        self.real = self.slots = self.steps = self.skipped = 0
        self.first: Optional[float] = None
        self.last = None

    def add(self, sample, elapsed: float, waited: float, loss, timed: bool, pad: int) -> None:
        tokens = sample["net_input"]["src_tokens"]
        if self.first is None and loss is not None:
            self.first = loss()
        if loss is not None:
            self.last = loss
        if not timed:
            return
        self.time += elapsed
        self.wait += waited
        self.steps += 1
        if loss is None:  # fairseq skipped the update: its time counts, its tokens trained nothing
            self.skipped += 1
            return
        self.real += int(tokens.ne(pad).sum())
        self.slots += tokens.numel()

    def result(self, device: str, workload: Workload, peak: Optional[float]) -> dict:
        tps = self.real / self.time if self.time else 0.0
        achieved = tps * workload.flops_per_token() / 1e12
        trained = self.steps - self.skipped
        return {
            "system": self.name, "steps": self.steps, "skipped_steps": self.skipped,
            "tokens_per_step": int(self.real // max(1, trained)),
            "tokens_per_s": round(tps, 1), "slot_tokens_per_s": round(self.slots / self.time, 1) if self.time else 0.0,
            "padding_share": round(1 - self.real / self.slots, 4) if self.slots else None,
            "unfilled_share": round(1 - self.real / (trained * workload.batch_size * workload.tokens_per_sample), 4)
            if trained else None,
            "step_s": round(self.time / max(1, self.steps), 4),
            "model_tflops_per_s": round(achieved, 3), "mfu": round(achieved / peak, 4) if peak else None,
            "peak_memory_gb": round(peak_memory_gb(device), 2), "data_wait_s": round(self.wait, 4),
            "data_wait_share": round(self.wait / self.time, 4) if self.time else None,
            "first_loss": round(self.first, 4) if self.first is not None else None,
            "loss": round(self.last(), 4) if self.last is not None else None,
        }


def failure(name: str, e: BaseException) -> dict:
    kind = "out of memory" if isinstance(e, torch.cuda.OutOfMemoryError) else type(e).__name__
    return {"system": name, "error": f"{kind}: {(str(e).strip().splitlines() or [''])[0][:500]}"}


def measure(name: str, system, batches, args, workload: Workload, peak: Optional[float], pad: int) -> dict:
    """Warm-up steps, then timed steps; the loop's only host syncs are the system's own."""
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    meter, it = Meter(name), iter(batches)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(args.device)
            start = time.perf_counter()
        t = time.perf_counter()
        sample = next(it)
        waited = time.perf_counter() - t
        meter.add(sample, 0.0, waited, system.step(sample), i >= args.warmup, pad)
    sync(args.device)
    meter.time = time.perf_counter() - start
    return meter.result(args.device, workload, peak)


def measure_interleaved(systems: Dict[str, object], batches: Dict[str, Callable], args, workload: Workload,
                        peak: Optional[float], pad: int) -> List[dict]:
    """All systems alive, one step of each in turn: on a shared, loaded machine a burst of
    other work then slows every system alike instead of whichever ran at that moment. A
    system whose step raises leaves the rotation with its error; the others go on."""
    its = {name: iter(batches[name]()) for name in systems}
    meters = {name: Meter(name) for name in systems}
    errors = {}
    for i in range(args.warmup + args.steps):
        for name, system in systems.items():
            if name in errors:
                continue
            t = time.perf_counter()
            sample = next(its[name])
            waited = time.perf_counter() - t
            try:
                loss = system.step(sample)
                sync(args.device)
            except Exception as e:  # one failing system never stops the others
                errors[name] = failure(name, e)
                continue
            meters[name].add(sample, time.perf_counter() - t, waited, loss, i >= args.warmup, pad)
    results = [errors.get(name) or meters[name].result(args.device, workload, peak) for name in systems]
    for r in results:
        print(format_row(r), flush=True)
    return results


def run_system(name: str, build, batches, args, workload, peak, pad: int) -> dict:
    """Build and measure one system; any error (out of memory, a failed compile, a skipped
    kernel) becomes that system's result, so the systems after it are still measured."""
    system = None
    try:
        system = build()
        result = measure(name, system, batches(), args, workload, peak, pad)
    except Exception as e:
        result = failure(name, e)
    del system
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    print(format_row(result), flush=True)
    return result


def summarise(name: str, runs: List[dict]) -> dict:
    """One system over its rounds: the mean tokens/s (and step time, MFU), each round's
    tokens/s, and the other figures of the last round."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = {k: v for k, v in ok[-1].items() if k != "round"}
    mean = sum(r["tokens_per_s"] for r in ok) / len(ok)
    scale = mean / ok[-1]["tokens_per_s"]
    out.update(tokens_per_s=round(mean, 1), step_s=round(ok[-1]["step_s"] / scale, 4),
               model_tflops_per_s=round(ok[-1]["model_tflops_per_s"] * scale, 3),
               mfu=round(ok[-1]["mfu"] * scale, 4) if ok[-1]["mfu"] is not None else None,
               peak_memory_gb=max(r["peak_memory_gb"] for r in ok),
               tokens_per_s_by_round=[r["tokens_per_s"] for r in ok])
    return out


def packing_gain(results: List[dict]) -> Optional[dict]:
    """The packed lever against the plugin without it (``--ablate``): the ratio of their real
    tokens/s, beside the share of the steps' slots that complete blocks leave empty (short rows
    and padding) and packed ones fill. The goal on GPU: faster by at least that share."""
    by_name = {r["system"]: r for r in results if r.get("tokens_per_s")}
    packed, complete = by_name.get("plugin"), by_name.get("plugin-packed")
    if packed is None or complete is None:
        return None
    ratio = packed["tokens_per_s"] / complete["tokens_per_s"]
    removed = complete["unfilled_share"] - packed["unfilled_share"]
    return {"ratio": round(ratio, 3), "unfilled_share_complete": complete["unfilled_share"],
            "unfilled_share_packed": packed["unfilled_share"], "removed_unfilled_share": round(removed, 4),
            "padding_share_complete": complete["padding_share"], "padding_share_packed": packed["padding_share"],
            "goal": f"ratio >= 1 + removed_unfilled_share = {1 + removed:.3f}", "goal_met": ratio >= 1 + removed}


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['system']:<24} {r['error']}"
    mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "    - "
    skipped = f"  {r['skipped_steps']} skipped" if r.get("skipped_steps") else ""
    return (f"{r['system']:<24} {r['tokens_per_s']:>11.1f} real tok/s  pad {100 * (r['padding_share'] or 0):4.1f}%  "
            f"unfilled {100 * (r['unfilled_share'] or 0):4.1f}%  "
            f"MFU {mfu}  {r['model_tflops_per_s']:8.3f} TFLOP/s  peak {r['peak_memory_gb']:6.2f} GB  "
            f"data wait {r['data_wait_s']:.3f} s  loss {r['first_loss']} -> {r['loss']}{skipped}")


def find_max_batch(data: Path, workload: Workload, args, levers: List[str]) -> Dict[str, dict]:
    """The largest batch (sequences of --tokens-per-sample) that trains two steps without
    running out of memory, with and without activation checkpointing: doubling, then bisection."""
    out = {}
    for checkpoint in (False, True):
        chosen = [lv for lv in levers if lv != "checkpoint"] + (["checkpoint"] if checkpoint else [])
        argv = fairseq_args(str(data), workload, args.device, 0, args.seed, str(args.work_dir / "checkpoints"))
        argv += plugin_args(chosen, args.device)
        system = FairseqSystem(argv)
        dataset = system.task.dataset("train")

        def fits(b: int) -> bool:
            sample = dataset.collater([dataset[i % len(dataset)] for i in range(b)])
            try:
                ok = all(system.trainer.train_step([sample]) is not None for _ in range(2))
            except torch.cuda.OutOfMemoryError:
                ok = False
            system.trainer.zero_grad()
            gc.collect()
            torch.cuda.empty_cache()
            return ok

        low, high = 0, 8
        while high <= 4096 and fits(high):
            low, high = high, high * 2
        while high - low > max(1, low // 16):  # within 1/16
            mid = (low + high) // 2
            low, high = (mid, high) if fits(mid) else (low, mid)
        key = "activation_checkpointing" if checkpoint else "no_checkpointing"
        tokens = low * workload.tokens_per_sample
        out[key] = {"batch_size": low, "tokens": tokens}
        print(f"max batch ({key}): {low} x {workload.tokens_per_sample} = {tokens} tokens", flush=True)
        del system, dataset
        gc.collect()
        torch.cuda.empty_cache()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", choices=["large", "base"], default="large", help="GPU size (CPU: a small one)")
    for name in ("layers", "width", "heads", "ffn", "tokens-per-sample", "batch-size", "warmup", "steps", "num-workers",
                 "rounds"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--levers", help=f"plugin levers, comma-separated, or 'none'; known: {','.join(LEVERS)}; "
                                    f"default on GPU: {','.join(DEFAULT_LEVERS)}; on CPU: {','.join(CPU_LEVERS)}")
    p.add_argument("--systems", default="plugin,fairseq,hf")
    p.add_argument("--schedule", choices=["rounds", "interleaved"],
                   help="rounds (GPU default): each system alone, freshly built, --rounds times in alternating "
                        "order; interleaved (CPU default): all systems alive, one step of each in turn, which "
                        "shares a loaded machine's noise fairly (peak memory is then the process's)")
    p.add_argument("--ablate", nargs="?", const="all",
                   help="also run the plugin with each lever off in turn (with it any lever that needs it: "
                        f"{', '.join(f'{a} needs {b}' for a, b in REQUIRES.items())}), or only those listed, "
                        "comma-separated (--ablate packed)")
    p.add_argument("--find-max-batch", action="store_true", help="largest batch per GPU, with and without checkpointing")
    p.add_argument("--peak-tflops", type=float, help="for MFU; default from the GPU's name (H100: 989)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work-dir", type=Path, help="where the synthetic data and any crash.pt go (default: a "
                                                  "temporary folder)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    shape = SHAPES[f"xlmr_{args.arch}"] if gpu else CPU_SHAPE
    defaults = dict(layers=shape.layers, width=shape.width, heads=shape.heads, ffn=shape.ffn,
                    tokens_per_sample=512 if gpu else 128,
                    batch_size=16 if gpu else 8, warmup=10 if gpu else 2, steps=30 if gpu else 5,
                    num_workers=4 if gpu else 1, rounds=2)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.schedule is None:
        args.schedule = "rounds" if gpu else "interleaved"
    if args.levers is None:
        args.levers = ",".join(DEFAULT_LEVERS if gpu else CPU_LEVERS)
    args.lever_list = [] if args.levers == "none" else args.levers.split(",")
    unknown = set(args.lever_list) - set(LEVERS)
    if unknown:
        p.error(f"--levers: unknown {sorted(unknown)}; known: {','.join(LEVERS)}")
    for lever in args.lever_list:
        if REQUIRES.get(lever, lever) not in args.lever_list:
            p.error(f"--levers: {lever} needs {REQUIRES[lever]}")
    ablate = [] if args.ablate is None else args.lever_list if args.ablate == "all" else args.ablate.split(",")
    if set(ablate) - set(args.lever_list):
        p.error(f"--ablate: {sorted(set(ablate) - set(args.lever_list))} not among the levers "
                f"{','.join(args.lever_list) or 'none'}")
    args.work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="xlmr-train-bench-"))
    args.dropped_levers = unavailable_levers(args.lever_list, args.device)
    for lever, reason in args.dropped_levers.items():
        print(f"lever {lever} dropped: {reason}", flush=True)
    args.lever_list = [lv for lv in args.lever_list if lv not in args.dropped_levers]
    args.ablations = {}  # system name -> its levers
    for lever in ablate:
        if lever in args.lever_list:
            chosen = without(args.lever_list, lever)
            off = [lever] + [lv for lv in args.lever_list if lv not in chosen and lv != lever]
            args.ablations["plugin-" + "-".join(off)] = chosen
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    workload = Workload(Shape(args.layers, args.width, args.heads, args.ffn), VOCAB, args.tokens_per_sample,
                        args.batch_size)
    gpu_name = torch.cuda.get_device_name() if args.device == "cuda" else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu_name and k in gpu_name), None)
    work = args.work_dir
    n_runs = (args.rounds if args.schedule == "rounds" else 1) * (len(args.systems.split(",")) + len(args.ablations))
    # complete blocks fill about 3/4 of the slots; 8 times the steps' slots also make the few
    # short blocks that packing leaves (its last bins) a small share of the epoch, as in real shards
    needed = 8 * (args.warmup + args.steps + 2) * args.batch_size * args.tokens_per_sample
    data = write_data(work, VOCAB, max(needed, 4096 * args.tokens_per_sample if args.find_max_batch else 0), args.seed)
    common = fairseq_args(str(data), workload, args.device, args.num_workers, args.seed, str(work / "checkpoints"))
    print(f"device {gpu_name or 'cpu'}; {workload}; {workload.flops_per_token() / 1e9:.3f} GFLOP/token; "
          f"levers {','.join(args.lever_list) or 'none'}; {n_runs} runs", flush=True)

    # each fairseq system's arguments; HF reads what stock fairseq reads
    argvs = {"plugin": common + plugin_args(args.lever_list, args.device), "fairseq": common + stock_args(args.device),
             **{name: common + plugin_args(chosen, args.device) for name, chosen in args.ablations.items()}}
    argvs["hf"] = argvs["fairseq"]
    readers: Dict[str, tuple] = {}  # break mode -> (task, cfg): one task per mode, its batches shared

    @functools.lru_cache(maxsize=None)
    def reader(name: str) -> tuple:
        cfg = training_cfg(argvs[name])
        mode = str(cfg.task.sample_break_mode)
        if mode not in readers:
            readers[mode] = (training_task(cfg), cfg)
        return readers[mode]

    errors: Dict[str, dict] = {}
    try:
        plugin = FairseqSystem(argvs["plugin"], reader("plugin")[0])
    except Exception as e:  # the others still run, on the weights of stock fairseq
        errors["plugin"] = failure("plugin", e)
        print(format_row(errors["plugin"]), flush=True)
        plugin = FairseqSystem(argvs["fairseq"], reader("fairseq")[0])
    init = {k: v.detach().cpu().clone() for k, v in plugin.model.state_dict().items()}
    pad = plugin.task.source_dictionary.pad()
    builders = {name: functools.partial(lambda n: FairseqSystem(argvs[n], reader(n)[0], init), name)
                for name in argvs if name != "hf"}
    builders["hf"] = lambda: HFSystem(workload, init, args.device)
    order = args.systems.split(",") + list(args.ablations)
    batches = {name: functools.partial(lambda n: epoch_batches(*reader(n), workload), name) for name in order}
    first = {} if errors else {"plugin": plugin}  # the system already built for the task and the weights
    del plugin
    runs = []
    if args.schedule == "interleaved":
        systems = {}
        for name in order:
            try:
                systems[name] = first.pop(name) if name in first else builders[name]()
            except Exception as e:
                errors[name] = failure(name, e)
        measured = {r["system"]: r for r in measure_interleaved(systems, batches, args, workload, peak, pad)}
        results = [errors.get(name) or measured[name] for name in order]
        del systems
    else:
        # rounds alternate the order (A B C, C B A, ...): no system always runs first or last
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                build = (lambda n=name: first.pop(n)) if name in first else builders[name]
                if name in errors:  # the plugin failed to build already: no second try
                    runs.append({**errors[name], "round": r})
                    continue
                runs.append({**run_system(name, build, batches[name], args, workload, peak, pad), "round": r})
        results = [summarise(name, [run for run in runs if run["system"] == name]) for name in order]
    tps = {r["system"]: r["tokens_per_s"] for r in results if "tokens_per_s" in r}
    ratios = {f"{a}/{b}": round(tps[a] / tps[b], 3) for a, b in
              [("plugin", "fairseq"), ("plugin", "hf"), ("fairseq", "hf")] if a in tps and b in tps}
    ratios.update({f"plugin/{name}": round(tps["plugin"] / tps[name], 3)
                   for name in args.ablations if "plugin" in tps and name in tps})
    if args.schedule == "rounds":
        print("mean over rounds:")
        for r in results:
            print(format_row(r))
    for key, value in ratios.items():
        print(f"{key:<32} {value:.3f}x")
    packing = packing_gain(results)
    if packing:
        print(f"packed: {packing['ratio']:.3f}x the real tokens/s of complete blocks; unfilled slots "
              f"{100 * packing['unfilled_share_complete']:.1f}% -> {100 * packing['unfilled_share_packed']:.1f}% "
              f"(padding {100 * packing['padding_share_complete']:.1f}% -> "
              f"{100 * packing['padding_share_packed']:.1f}%); "
              f"goal {packing['goal']}: {packing['goal_met']}", flush=True)
    max_batch = None
    if args.find_max_batch:
        if args.device == "cuda":
            max_batch = find_max_batch(data, workload, args, args.lever_list)
        else:
            max_batch = "skipped: --find-max-batch needs a GPU"
            print(max_batch)
    figures = {
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(["python", __file__, *argv]),
        "device": gpu_name or "cpu", "processor": processor(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "omp_num_threads": torch.get_num_threads(), "workload": asdict(workload),
        "flops_per_token": workload.flops_per_token(), "peak_tflops": peak, "levers": args.lever_list,
        "dropped_levers": args.dropped_levers,
        "tokens": "real (non-padding) tokens; slot_tokens_per_s counts all; unfilled_share: "
                  "1 - real tokens / (steps x batch_size x tokens_per_sample)",
        "num_workers": args.num_workers, "warmup": args.warmup,
        "peak_memory": "torch.cuda.max_memory_allocated per system" if args.device == "cuda"
        else "process max RSS so far (cumulative: systems run in the order listed)",
        "schedule": args.schedule, "rounds": args.rounds if args.schedule == "rounds" else None, "differences": DIFFERENCES, "results": results, "ratios": ratios,
        "packing": packing,
        "runs": runs, "max_batch": max_batch,
    }
    if args.device == "cpu":
        figures["gpu_figures"] = f"on a GPU machine, from the repository root: {GPU_COMMAND}"
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
