"""Binarization wall time: `xlmr-prepare` against the stock two-step path
(`spm_encode`, then `fairseq-preprocess --only-source --srcdict`) on the same
corpus, vocabulary and train/valid split, in one run.

    python benchmarks/prepare_throughput.py [--corpus ../shared/corpus/mono] [--vocab-size 32000]

Both sides use every core: ours through its process pool, the baseline by
running one language's two-step pipeline per core at a time (each
`fairseq-preprocess --workers 1`), so that neither side waits on the largest
language alone. The vocabulary is trained once beforehand and not timed; the
baseline starts from split text files, whose writing is not timed either, while
our figure includes reading and splitting the raw corpus.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xlmr.preprocess import corpus, prepare
from xlmr_plugin.storage import layout
import stock_prepare as reference

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "mono")
    parser.add_argument("--langs", default=None, help="comma-separated; default: all")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--spm-encode", choices=["python", "binary"], default="python",
                        help="baseline encoder: fairseq's spm_encode.py on the installed library (byte-comparable), "
                             "or Debian's C++ spm_encode")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    binary = reference.spm_encode_binary() if args.spm_encode == "binary" else None
    if args.spm_encode == "binary" and binary is None:
        parser.error("spm_encode is not installed (Debian package sentencepiece)")
    work = Path(tempfile.mkdtemp(prefix="xlmr-bench-"))
    try:
        figures = run(args, work, binary)
    finally:
        shutil.rmtree(work)
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def run(args, work: Path, binary) -> dict:
    dest = work / "ours"
    common = [str(args.corpus), str(dest), "--vocab-size", str(args.vocab_size), "--workers", str(args.workers)]
    if args.langs:
        common += ["--langs", args.langs]
    settings = prepare.parse_args(common)
    start = time.perf_counter()
    stats = prepare.run(settings)  # vocabulary and shards, to have the vocabulary
    vocab_and_shards = time.perf_counter() - start
    langs = [s.lang for s in stats]
    for lang in langs:
        shutil.rmtree(dest / lang)
    start = time.perf_counter()
    prepare.run(prepare.parse_args(common))  # reuses the vocabulary: scan + split + encode + binarize
    ours = time.perf_counter() - start

    # The baseline starts from split text files (their writing is not timed).
    text = work / "text"
    text.mkdir()
    files = {f.lang: f for f in corpus.discover(args.corpus, langs)}
    for lang in langs:
        scan = corpus.scan(files[lang])
        valid = corpus.valid_document_ids(lang, scan.documents, settings.split.valid_docs, settings.split.seed)
        corpus.write_split_text(files[lang].path, valid, text / f"{lang}.train", text / f"{lang}.valid")
    base = work / "baseline"
    order = sorted(langs, key=lambda lang: -(text / f"{lang}.train").stat().st_size)
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda lang: reference.two_step(
            dest / layout.SPM_MODEL, dest / layout.DICT, text / f"{lang}.train", text / f"{lang}.valid",
            base / lang, workers=1, binary=binary), order))
    baseline = time.perf_counter() - start

    identical = sum(
        Path(f"{layout.split_prefix(dest, lang, split)}.{ext}").read_bytes()
        == Path(f"{layout.split_prefix(base, lang, split)}.{ext}").read_bytes()
        for lang in langs for split in layout.SPLITS for ext in ("bin", "idx")
    )
    tokens = sum(s.splits["train"].tokens + s.splits["valid"].tokens for s in stats)
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "corpus": str(args.corpus),
        "languages": len(langs),
        "tokens": tokens,
        "vocab_size": args.vocab_size,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "baseline_encoder": binary or "python spm_encode (fairseq scripts/spm_encode.py --keep-empty)",
        "vocabulary_and_shards_s": round(vocab_and_shards, 2),
        "xlmr_prepare_s": round(ours, 2),
        "two_step_s": round(baseline, 2),
        "speedup": round(baseline / ours, 2),
        "xlmr_prepare_tokens_per_s_per_core": round(tokens / ours / args.workers),
        "two_step_tokens_per_s_per_core": round(tokens / baseline / args.workers),
        "identical_files": f"{identical}/{4 * len(langs)}",
    }


def print_figures(figures: dict) -> None:
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
