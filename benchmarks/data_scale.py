"""Start-up of one training rank against corpus size: sharded DEST against one file per language.

    python benchmarks/data_scale.py --repeats 3 --json benchmarks/results/data_scale.json --md benchmarks/results/data_scale.md
    ... --sizes 0.1,1   --shard-tokens 8388608   --max-unsharded 3   --timeout 600   --mem-cap-gb 12

A CC-100 rank must start in seconds with a few GB whatever the corpus size (issue 14). For
each size (billions of tokens) a synthetic DEST is written in the real formats, with only
the token bytes left out: 100 languages l000..l099 whose shares follow Zipf's law,
share_r ∝ 1/r for rank r = 1..100, so that the largest holds 1/H_100 = 19.3% of the
tokens (English's share of CC-100); lines of lognormal size (σ = 1, mean 40 tokens, at
least 2, at most 2000) with a document break (an empty item of 1 token) after each line
with probability 1/8; a dict.txt that makes the 250,002-symbol vocabulary; real int32
``.idx`` files and sparse ``.bin`` files of the right size. Two layouts of the same items:

- unsharded: ``<lang>/train.{bin,idx}``, block boundaries computed by each rank at start;
- sharded: the train split cut into shards of whole documents of ``--shard-tokens`` tokens
  (the rule of preprocess/binarize.py's ShardWriter), each with the block boundaries
  xlmr-prepare saves for (complete, 512), and ``stats.json``'s ``train_shards``.

Every (size, layout) starts a fresh Python process that does what a rank of fairseq-train
does before its first step: import the plugin, set up ``xlmr_mlm``, load epoch 1 of the
train split, build the batch iterator of rank 0 of 8 (16 blocks per batch) and take its
first batch. The figures: seconds from process start to that batch, seconds of set-up +
load + iterator + first batch alone (imports excluded), and the process's peak RSS
(ru_maxrss; it counts the pages of memory-mapped files that were read). Each run has
``--timeout`` seconds and ``--mem-cap-gb`` of RSS, and is recorded as timed out or out of
memory beyond them. The page cache is warm (the files were just written or read), as on a
node that has read the data once; ``--cold`` evicts a DEST's files before each run.
Generated DESTs are kept under ``--work`` by size, seed and shard size, and reused.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = 250_002
LANGS = 100
TOKENS_PER_SAMPLE, BREAK_MODE = 512, "complete"
MEAN_LINE, SIGMA, MAX_LINE, DOC_BREAK_P = 40, 1.0, 2000, 1 / 8
VALID_LINES = 300  # about: the valid split holds VALID_LINES * MEAN_LINE tokens
CHUNK_LINES = 1 << 22
DONE = "generated.json"  # written last into a DEST: its presence means complete
FIGURES = ("startup_s", "load_iterator_s", "peak_rss_gb")
GOALS = {"startup_s": 30.0, "peak_rss_gb": 3.0, "flat": 0.2}


def language_tokens(total: int) -> np.ndarray:
    """Tokens of each language: Zipf shares, share_r ∝ 1/r."""
    shares = 1.0 / np.arange(1, LANGS + 1)
    return np.maximum(1, np.round(total * shares / shares.sum())).astype(np.int64)


def item_chunks(rng: np.random.Generator, tokens: int) -> Iterator[np.ndarray]:
    """Item sizes (lines and 1-token document breaks) of a language, in chunks, until
    ``tokens`` are reached; the last chunk ends its document."""
    written = 0
    mu = np.log(MEAN_LINE) - SIGMA**2 / 2  # lognormal mean exp(mu + σ²/2) = MEAN_LINE
    n = min(CHUNK_LINES, tokens // MEAN_LINE + 64)
    while written < tokens:
        lines = np.clip(np.rint(rng.lognormal(mu, SIGMA, n)), 2, MAX_LINE).astype(np.int32)
        breaks = rng.random(n) < DOC_BREAK_P
        at = np.cumsum(1 + breaks) - (1 + breaks)  # each line's position, a break after it
        items = np.ones(n + int(breaks.sum()), dtype=np.int32)
        items[at] = lines
        ends = written + np.cumsum(items, dtype=np.int64)
        if ends[-1] >= tokens:
            items = items[: int(np.searchsorted(ends, tokens)) + 1]
            if items[-1] != 1:
                items = np.append(items, np.int32(1))
        written += int(items.sum(dtype=np.int64))
        yield items


class ShardCutter:
    """ShardWriter's rule on item sizes alone: a shard ends at the first document break
    once it holds ``shard_tokens`` tokens; each finished shard is written at once."""

    def __init__(self, dest: Path, lang: str, shard_tokens: int):
        self.dest, self.lang, self.shard_tokens = dest, lang, shard_tokens
        self.shards: List[int] = []
        self._sizes: List[np.ndarray] = []
        self._tokens = 0

    def add(self, sizes: np.ndarray) -> None:
        while len(sizes):
            ends = self._tokens + np.cumsum(sizes, dtype=np.int64)
            breaks = np.flatnonzero((sizes == 1) & (ends >= self.shard_tokens))
            if not len(breaks):
                break
            cut = int(breaks[0]) + 1
            self._sizes.append(sizes[:cut])
            self._tokens = int(ends[cut - 1])
            self.finish()
            sizes = sizes[cut:]
        if len(sizes):
            self._sizes.append(sizes)
            self._tokens += int(sizes.sum(dtype=np.int64))

    def finish(self) -> None:
        from xlmr_plugin.data.mapped_block_dataset import precompute_blocks
        from xlmr_plugin.storage import layout

        if not self._sizes:
            return
        prefix = layout.train_shard(self.dest, self.lang, len(self.shards))
        write_split(prefix, np.concatenate(self._sizes))
        precompute_blocks(prefix, TOKENS_PER_SAMPLE, BREAK_MODE)
        self.shards.append(self._tokens)
        self._sizes, self._tokens = [], 0


def write_split(prefix: Path, sizes: np.ndarray) -> int:
    """A real ``.idx`` for ``sizes`` and a sparse ``.bin`` of exactly its tokens."""
    from xlmr_plugin.storage.token_shards import write_index

    write_index(Path(f"{prefix}.idx"), np.int32, sizes)
    tokens = int(sizes.sum(dtype=np.int64))
    with open(f"{prefix}.bin", "wb") as f:
        os.truncate(f.fileno(), tokens * np.dtype(np.int32).itemsize)
    return tokens


def generate(work: Path, billions: float, seed: int, shard_tokens: int, layouts: List[str]) -> Dict[str, Path]:
    """The DESTs of ``layouts`` for a corpus of ``billions`` tokens, written in one pass over
    the same items where missing, reused where complete."""
    from xlmr_plugin.storage import layout

    total = int(round(billions * 1e9))
    base = work / f"tokens{total}_seed{seed}"
    dests = {"unsharded": base / "unsharded", "sharded": base / f"sharded{shard_tokens}"}
    dests = {name: dests[name] for name in layouts}
    todo = {name: d for name, d in dests.items() if not (d / DONE).exists()}
    if not todo:
        return dests
    start = time.perf_counter()
    print(f"writing {billions:g}B tokens: {', '.join(map(str, todo.values()))}", flush=True)
    for dest in todo.values():
        dest.mkdir(parents=True, exist_ok=True)
        # 4 specials + entries + <mask> = VOCAB
        (dest / layout.DICT).write_text("".join(f"w{i} 1\n" for i in range(VOCAB - 5)))
    for i, tokens in enumerate(language_tokens(total)):
        lang = f"l{i:03d}"
        for dest in todo.values():
            (dest / lang).mkdir(exist_ok=True)
        cutter = ShardCutter(todo["sharded"], lang, shard_tokens) if "sharded" in todo else None
        whole: List[np.ndarray] = []
        for chunk in item_chunks(np.random.default_rng([seed, i, 0]), int(tokens)):
            if cutter:
                cutter.add(chunk)
            if "unsharded" in todo:
                whole.append(chunk)
        valid = np.concatenate(list(item_chunks(np.random.default_rng([seed, i, 1]), VALID_LINES * MEAN_LINE)))
        shards = {}
        if cutter:
            cutter.finish()
            shards["sharded"] = cutter.shards
        if whole:
            shards["unsharded"] = [write_split(layout.train_shard(todo["unsharded"], lang, 0), np.concatenate(whole))]
        for name, dest in todo.items():
            write_split(layout.split_prefix(dest, lang, "valid"), valid)
            (dest / lang / layout.LANGUAGE_MARKER).write_text(json.dumps({"train_shards": shards[name]}))
    for name, dest in todo.items():
        (dest / DONE).write_text(json.dumps({"tokens": total, "seed": seed, "shard_tokens": shard_tokens,
                                             "write_s": round(time.perf_counter() - start, 1)}))
    print(f"  written in {time.perf_counter() - start:.1f} s", flush=True)
    return dests


def evict(dest: Path) -> None:
    """Drop a DEST's pages from the page cache (clean pages; no root needed)."""
    for path in dest.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(dest: str, t0: float, profile: Optional[str]) -> None:
    """One rank's start-up, as fairseq-train does it; prints one JSON line."""
    t_import = time.perf_counter()
    import xlmr_plugin  # noqa: F401  (registers the task, as --user-dir does)
    from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig, XLMRMLMTask

    imported = time.perf_counter()
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    phases = {}
    t = time.perf_counter()
    task = XLMRMLMTask.setup_task(XLMRMLMConfig(data=dest, tokens_per_sample=TOKENS_PER_SAMPLE,
                                                sample_break_mode=BREAK_MODE, seed=1, train_subset="train"))
    phases["setup_task_s"], t = time.perf_counter() - t, time.perf_counter()
    task.load_dataset("train", epoch=1)
    phases["load_dataset_s"], t = time.perf_counter() - t, time.perf_counter()
    dataset = task.dataset("train")
    itr = task.get_batch_iterator(dataset, max_sentences=16, seed=1, epoch=1, num_shards=8, shard_id=0,
                                  disable_iterator_cache=True)
    epoch = itr.next_epoch_itr(shuffle=True)
    phases["batch_iterator_s"], t = time.perf_counter() - t, time.perf_counter()
    batch = next(epoch)
    phases["first_batch_s"] = time.perf_counter() - t
    done_wall, done = time.time(), time.perf_counter()
    if profile:
        import pstats
        profiler.disable()
        with open(profile, "w") as f:
            pstats.Stats(profiler, stream=f).sort_stats("cumulative").print_stats(25)
    status = Path("/proc/self/status").read_text()
    anon = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")), 0)
    print(json.dumps({
        "startup_s": round(done_wall - t0, 3), "import_s": round(imported - t_import, 3),
        "load_iterator_s": round(done - imported, 3), **{k: round(v, 3) for k, v in phases.items()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "rss_anon_gb_at_first_batch": round(anon / 2**20, 3),
        "train_shards": sum(len(s) for s in task.train_shards.values()), "epoch_blocks": len(dataset),
        "rank_batches": len(epoch), "first_batch_shape": list(batch["net_input"]["src_tokens"].shape),
    }))


def rss_gb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 2**20 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)


def run_child(dest: Path, args, profile: Optional[Path] = None) -> dict:
    """A fresh process for one start-up, stopped at --timeout or --mem-cap-gb of RSS."""
    if args.cold:
        evict(dest)
    cmd = [sys.executable, __file__, "--child", str(dest), "--t0"]
    t0 = time.time()
    proc = subprocess.Popen(cmd + [repr(t0)] + (["--profile-out", str(profile)] if profile else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, error = 0.0, None
    while proc.poll() is None:
        peak = max(peak, rss_gb(proc.pid))
        if time.time() - t0 > args.timeout:
            error = f"timed out (> {args.timeout} s)"
        elif peak > args.mem_cap_gb:
            error = f"out of memory (RSS > {args.mem_cap_gb} GB)"
        if error:
            proc.kill()
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    if error is None and proc.returncode != 0:
        oom = proc.returncode == -9 or "MemoryError" in err
        error = "out of memory (killed)" if oom else f"failed (exit {proc.returncode}): {err.strip()[-2000:]}"
    if error:
        return {"error": error, "watched_peak_rss_gb": round(peak, 3), "elapsed_s": round(time.time() - t0, 1)}
    return json.loads(out.strip().splitlines()[-1])


def fit(points: List[tuple]) -> Optional[dict]:
    """Least squares y = a + b x over (x, y); b per billion tokens and y at 300B."""
    if len(points) < 2:
        return None
    x, y = np.array(points, dtype=np.float64).T
    b, a = np.polyfit(x, y, 1)
    return {"intercept": round(float(a), 4), "per_billion": round(float(b), 4), "at_300B": round(float(a + 300 * b), 2)}


def epoch_tokens(billions: float, shard_tokens: Optional[int]) -> int:
    """Tokens in epoch 1: every language's first shard (all of it, unsharded)."""
    tokens = language_tokens(int(round(billions * 1e9)))
    return int(np.minimum(tokens, shard_tokens).sum() if shard_tokens else tokens.sum())


def summarise(rows: List[dict], shard_tokens: int) -> dict:
    """Per layout: least squares against size (per billion tokens, linear at 300B), and,
    since a sharded epoch reads one shard per language and so stops growing once every
    language fills one, against epoch-1 blocks, evaluated at 300B's epoch-1 blocks."""
    out = {}
    for name in ("sharded", "unsharded"):
        ok = [r for r in rows if r["layout"] == name and "error" not in r]
        if not ok:
            continue
        out[name] = {key: fit([(r["billions"], r[key]) for r in ok])
                     for key in ("startup_s", "load_iterator_s", "peak_rss_gb")}
        shard = shard_tokens if name == "sharded" else None
        blocks_300 = ok[-1]["epoch_blocks"] * epoch_tokens(300, shard) / epoch_tokens(ok[-1]["billions"], shard)
        out[name]["by_epoch_blocks"] = {"epoch_blocks_at_300B": int(blocks_300)}
        for key in ("startup_s", "load_iterator_s", "peak_rss_gb"):
            f = fit([(r["epoch_blocks"] / 1e6, r[key]) for r in ok])
            if f:
                out[name]["by_epoch_blocks"][key] = {"per_million_blocks": f["per_billion"],
                                                     "at_300B": round(f["intercept"] + f["per_billion"] * blocks_300 / 1e6, 2)}
        first, last = ok[0], ok[-1]
        out[name]["largest_over_smallest"] = {key: round(last[key] / first[key], 3)
                                              for key in ("startup_s", "load_iterator_s", "peak_rss_gb")}
    sharded = [r for r in rows if r["layout"] == "sharded"]
    if sharded:
        ok = [r for r in sharded if "error" not in r]
        ratio = out.get("sharded", {}).get("largest_over_smallest", {})
        out["goals"] = {
            f"startup_under_{GOALS['startup_s']:g}s": len(ok) == len(sharded) and all(
                r["startup_s"] < GOALS["startup_s"] for r in ok),
            f"peak_rss_under_{GOALS['peak_rss_gb']:g}GB": len(ok) == len(sharded) and all(
                r["peak_rss_gb"] < GOALS["peak_rss_gb"] for r in ok),
            "startup_flat_within_20pct": bool(ratio) and abs(ratio["startup_s"] - 1) <= GOALS["flat"],
            "peak_rss_flat_within_20pct": bool(ratio) and abs(ratio["peak_rss_gb"] - 1) <= GOALS["flat"],
        }
    return out


def format_row(r: dict) -> str:
    head = f"| {r['billions']:>6g}B | {r['layout']:<9} |"
    if "error" in r:
        return f"{head} {r['error']} |" + " |" * 5
    return (f"{head} {r['startup_s']:8.2f} | {r['load_iterator_s']:8.2f} | {r['peak_rss_gb']:6.2f} | "
            f"{r['rss_anon_gb_at_first_batch']:6.2f} | {r['train_shards']:>6} | {r['epoch_blocks']:>10} |")


HEADER = ["| size | layout | startup s | load+iterator s | peak RSS GB | anon RSS GB | shards | epoch blocks |",
          "|---:|---|---:|---:|---:|---:|---:|---:|"]


def markdown(figures: dict) -> str:
    lines = [f"    {figures['command']}", "", f"{figures['machine']}; code: {figures['git']}", "", *HEADER,
             *map(format_row, figures["results"]), ""]
    for note in figures["skipped"]:
        lines.append(f"- skipped: {note}")
    lines += ["", "| layout | figure | per billion tokens | at 300B (linear) | largest/smallest |", "|---|---|---:|---:|---:|"]
    for name in ("sharded", "unsharded"):
        for key, f in figures["summary"].get(name, {}).items():
            if key in FIGURES and f:
                ratio = figures["summary"][name]["largest_over_smallest"][key]
                lines.append(f"| {name} | {key} | {f['per_billion']} | {f['at_300B']} | {ratio} |")
    lines += ["", "Against epoch-1 blocks (a sharded epoch holds one shard per language, so it stops growing):", "",
              "| layout | figure | per million blocks | epoch blocks at 300B | at 300B |", "|---|---|---:|---:|---:|"]
    for name in ("sharded", "unsharded"):
        by = figures["summary"].get(name, {}).get("by_epoch_blocks", {})
        for key in FIGURES:
            if key in by:
                lines.append(f"| {name} | {key} | {by[key]['per_million_blocks']} | {by['epoch_blocks_at_300B']} | "
                             f"{by[key]['at_300B']} |")
    if "goals" in figures["summary"]:
        lines += ["", "Goals (sharded, every size): " + ", ".join(
            f"{k} {'yes' if v else 'NO'}" for k, v in figures["summary"]["goals"].items())]
    if figures.get("profile"):
        lines += ["", f"Profile of the sharded start-up at {figures['profile']['billions']:g}B (top 25, cumulative):",
                  "", *("    " + line for line in figures["profile"]["top"].splitlines())]
    return "\n".join(lines) + "\n"


def git_state() -> str:
    """The commit measured, and whether the plugin had uncommitted changes then."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "xlmr_plugin"], cwd=ROOT, capture_output=True, text=True).stdout
    return head.strip() + (" + uncommitted changes in xlmr_plugin/" if dirty.strip() else "")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="0.1,1,3,10", help="corpus sizes in billions of tokens, comma-separated")
    p.add_argument("--layouts", default="sharded,unsharded")
    p.add_argument("--shard-tokens", type=int, default=2**23, help="as xlmr-prepare's default")
    p.add_argument("--max-unsharded", type=float, default=3.0, help="largest size (B) run unsharded")
    p.add_argument("--repeats", type=int, default=1, help="start-ups per (size, layout); the fastest is kept")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per start-up")
    p.add_argument("--mem-cap-gb", type=float, default=12.0, help="RSS at which a start-up is stopped")
    p.add_argument("--cold", action="store_true", help="evict the DEST from the page cache before each start-up")
    p.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                   help="cProfile the sharded start-up at the largest size: auto = when a goal is missed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/xlmr_data_scale"))
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args.child, args.t0, args.profile_out)
        return {}
    sizes = sorted(float(s) for s in args.sizes.split(","))
    layouts = args.layouts.split(",")
    machine = (f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
               f"{'cold' if args.cold else 'warm'} page cache, shard {args.shard_tokens} tokens, rank 0 of 8, "
               f"16 blocks of {TOKENS_PER_SAMPLE} ({BREAK_MODE}) per batch")
    print(machine, flush=True)
    print("\n".join(HEADER), flush=True)
    rows, skipped = [], []
    for billions in sizes:
        wanted = [name for name in layouts if name != "unsharded" or billions <= args.max_unsharded]
        if len(wanted) < len(layouts):
            skipped.append(f"unsharded at {billions:g}B (above --max-unsharded {args.max_unsharded:g})")
        dests = generate(args.work, billions, args.seed, args.shard_tokens, wanted)
        for name in wanted:
            runs = []
            for _ in range(args.repeats):
                runs.append(run_child(dests[name], args))
                if "error" in runs[-1]:
                    break
            ok = [r for r in runs if "error" not in r]
            best = min(ok, key=lambda r: r["startup_s"]) if ok else runs[-1]
            rows.append({"billions": billions, "layout": name, **best,
                         "startup_s_runs": [r.get("startup_s") for r in runs]})
            print(format_row(rows[-1]), flush=True)
    for note in skipped:
        print(f"skipped: {note}")
    summary = summarise(rows, args.shard_tokens)
    for name in ("sharded", "unsharded"):
        for key, f in summary.get(name, {}).items():
            if key in FIGURES and f:
                by = summary[name]["by_epoch_blocks"].get(key)
                print(f"{name:<9} {key:<16} {f['per_billion']:+9.4f} per B  -> {f['at_300B']:9.2f} at 300B  "
                      f"(largest/smallest {summary[name]['largest_over_smallest'][key]}; by epoch blocks "
                      f"{by['at_300B'] if by else '-'} at {summary[name]['by_epoch_blocks']['epoch_blocks_at_300B']})")
    if "goals" in summary:
        print("goals:", json.dumps(summary["goals"]))
    profile = None
    missed = "goals" in summary and not all(summary["goals"].values())
    if "sharded" in layouts and (args.profile == "always" or (args.profile == "auto" and missed)):
        out = args.work / "profile.txt"
        result = run_child(generate(args.work, sizes[-1], args.seed, args.shard_tokens, ["sharded"])["sharded"],
                           args, profile=out)
        profile = {"billions": sizes[-1], "run": result, "top": out.read_text() if out.exists() else ""}
        print(profile["top"])
    figures = {
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(["python", __file__, *argv]),
        "machine": machine, "git": git_state(), "cpu_count": os.cpu_count(), "sizes_billions": sizes, "layouts": layouts,
        "shard_tokens": args.shard_tokens, "seed": args.seed, "cold": args.cold, "repeats": args.repeats,
        "data": {"languages": LANGS, "shares": "Zipf: share_r ∝ 1/r, largest 19.3%", "vocab": VOCAB,
                 "line_sizes": f"lognormal sigma {SIGMA}, mean {MEAN_LINE}, clipped to [2, {MAX_LINE}]",
                 "document_break_probability": DOC_BREAK_P, "valid_lines": VALID_LINES},
        "goals": GOALS, "results": rows, "skipped": skipped, "summary": summary, "profile": profile,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if args.md:
        args.md.write_text(markdown(figures))
    return figures


if __name__ == "__main__":
    main()
