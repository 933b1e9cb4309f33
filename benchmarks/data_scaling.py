"""Data-side scaling: `xlmr-prepare`'s vocabulary step (α-sampled sentences, SentencePiece
training, piece counts) and its binarization throughput per core, against corpus size.

    python benchmarks/data_scaling.py [--corpus ../shared/corpus/mono] [--fractions 0.125,0.25,0.5,1] \
        [--vocab-size 8000] [--json benchmarks/results/data_scaling_cpu2.json]

Each size is the first fraction of every language's documents (the language mix is kept).
As in prepare_throughput.py, `xlmr-prepare` runs twice per size: the first run builds the
vocabulary and the shards, the second reuses the vocabulary and rebuilds the shards
(scan + split + encode + binarize); the vocabulary step is the difference of the two.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from xlmr.preprocess import corpus, prepare
from xlmr_plugin.storage import layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_throughput import ROOT, print_figures  # noqa: E402


def cut_corpus(source: Path, out: Path, fraction: float) -> None:
    """The first ``fraction`` of each language's documents, whole documents; at least two,
    which xlmr-prepare needs to hold one out."""
    out.mkdir(parents=True)
    for lf in corpus.discover(source):
        documents = corpus.scan(lf).documents
        keep = max(2, round(documents * fraction))
        with open(out / f"{lf.lang}.txt", "w", encoding="utf-8") as f:
            for i, doc in enumerate(corpus.iter_documents(lf.path)):
                if i == keep:
                    break
                f.write("\n".join(doc) + "\n\n")


def measure(text: Path, dest: Path, args) -> dict:
    argv = [str(text), str(dest), "--vocab-size", str(args.vocab_size), "--workers", str(args.workers)]
    start = time.perf_counter()
    stats = prepare.run(prepare.parse_args(argv))
    first = time.perf_counter() - start
    for s in stats:
        shutil.rmtree(dest / s.lang)
    start = time.perf_counter()
    prepare.run(prepare.parse_args(argv))
    binarize = time.perf_counter() - start
    tokens = sum(s.splits["train"].tokens + s.splits["valid"].tokens for s in stats)
    vocab = json.loads((dest / layout.VOCAB_RECORD).read_text())
    return {
        "corpus_mb": round(sum(p.stat().st_size for p in text.iterdir()) / 2**20, 2),
        "tokens": tokens,
        "spm_sample_sentences": sum(vocab.get("sentences", {}).values()) or None,
        "vocabulary_s": round(first - binarize, 2),
        "binarize_s": round(binarize, 2),
        "binarize_tokens_per_s_per_core": round(tokens / binarize / args.workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "mono")
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xlmr-data-scaling-"))
    rows = []
    try:
        for fraction in map(float, args.fractions.split(",")):
            text = work / f"corpus_{fraction}"
            cut_corpus(args.corpus, text, fraction)
            row = {"fraction": fraction, **measure(text, work / f"dest_{fraction}", args)}
            rows.append(row)
            print_figures(row)
            print(flush=True)
    finally:
        shutil.rmtree(work)
    figures = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "corpus": str(args.corpus), "vocab_size": args.vocab_size, "workers": args.workers,
        "cpu_count": os.cpu_count(), "sizes": rows,
    }
    print(f"{'fraction':>8} {'MB':>7} {'tokens':>10} {'vocab s':>8} {'binarize s':>10} {'tok/s/core':>11}")
    for r in rows:
        print(f"{r['fraction']:>8} {r['corpus_mb']:>7} {r['tokens']:>10} {r['vocabulary_s']:>8} "
              f"{r['binarize_s']:>10} {r['binarize_tokens_per_s_per_core']:>11}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
