"""`xlmr-prepare CORPUS DEST`: raw CC-100 style text -> one shared SentencePiece
vocabulary -> binarized per-language shards that `fairseq-train` reads.

DEST/spm.model, DEST/dict.txt    the vocabulary (trained here, or given with --spm-model/--dict)
DEST/<lang>/{train,valid}.{bin,idx}  fairseq mmap files, one item per line, an empty item after each document;
                                 train in shards train, train1, ... of --shard-tokens, each with its
                                 saved blocks (train.blocks-<mode>-<tokens>.npy)
DEST/stats.tsv                   documents, lines, tokens, p_i and q_i per language
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import time
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from tqdm import tqdm

from xlmr.preprocess import binarize, corpus, report, sampling, vocabulary
from xlmr.preprocess.config import GivenVocabulary, PrepareConfig, SettingError, SplitSettings, VocabularySettings
from xlmr.slurm import executor as slurm_executor
from xlmr.slurm import retrying_array
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import atomic_path
from xlmr_plugin.storage.writer_lock import FolderLocked, one_writer

logger = logging.getLogger("xlmr-prepare")


def parse_args(argv: Optional[list[str]] = None) -> PrepareConfig:
    """The command line as a `PrepareConfig`; a bad value exits naming its flag."""
    parser = argparse.ArgumentParser(prog="xlmr-prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="directory of <lang>.txt[.gz|.xz] files")
    parser.add_argument("dest", type=Path, help="output directory (rerunning skips finished languages)")
    parser.add_argument("--langs", type=lambda s: [x for x in s.split(",") if x], help="comma-separated; default: every file")
    parser.add_argument("--vocab-size", type=int, default=250_000, help="SentencePiece pieces (XLM-R: 250k)")
    parser.add_argument("--alpha", type=float, default=0.3, help="language smoothing exponent for the vocabulary sample")
    parser.add_argument("--valid-docs", type=int, default=100, help="documents held out per language (at most a tenth)")
    parser.add_argument("--spm-model", type=Path, help="use this SentencePiece model (e.g. XLM-R's sentencepiece.bpe.model)")
    parser.add_argument("--dict", type=Path, help="with --spm-model: its fairseq dict.txt")
    parser.add_argument("--spm-sample-lines", type=int, default=10_000_000, help="sentences to train SentencePiece on, at most")
    parser.add_argument("--character-coverage", type=float, default=0.9995)
    parser.add_argument("--spm-memory-gb", type=float, default=16.0,
                        help="memory for SentencePiece's training: the sample is cut to fit (about "
                             f"{vocabulary.SPM_BYTES_PER_SAMPLE_BYTE} bytes per byte of sample text)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the valid split and the vocabulary sample")
    parser.add_argument("--skip-invalid", action="store_true", help="drop lines that are not UTF-8 (counted) instead of failing")
    parser.add_argument("--shard-gb", type=float, default=4.0,
                        help="a language file larger than this is encoded as pieces in parallel, then merged")
    parser.add_argument("--shard-tokens", type=int, default=2**23,
                        help="training shards of whole documents of about this many tokens each (default 8Mi): "
                             "a rank holds one shard per language per epoch")
    slurm_executor.add_arguments(parser, cpus=4, mem_gb=16, time_min=24 * 60)
    args = parser.parse_args(argv)
    if (args.spm_model is None) != (args.dict is None):
        parser.error("--spm-model and --dict go together")
    if args.valid_docs < 1:
        parser.error("--valid-docs must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.shard_gb <= 0:
        parser.error("--shard-gb must be positive")
    if args.shard_tokens < 4096:
        parser.error(f"--shard-tokens must be at least 4096, got {args.shard_tokens}")
    try:
        vocab_settings = VocabularySettings(args.vocab_size, args.alpha, args.spm_sample_lines,
                                            args.character_coverage, args.spm_memory_gb)
    except SettingError as e:
        parser.error(str(e))
    return PrepareConfig(
        corpus=args.corpus,
        dest=args.dest,
        langs=None if args.langs is None else tuple(args.langs),
        split=SplitSettings(args.valid_docs, args.seed, args.skip_invalid),
        vocabulary=vocab_settings,
        given=None if args.spm_model is None else GivenVocabulary(args.spm_model, args.dict),
        workers=args.workers,
        shard_gb=args.shard_gb,
        shard_tokens=args.shard_tokens,
        executor=slurm_executor.ExecutorOptions.from_args(args),
    )


def _parallel(pool: Executor, fn: Callable, jobs: Iterable[tuple], desc: str) -> list:
    """Run fn(*job) for every job in the pool, with a progress bar; results in job order."""
    futures = [pool.submit(fn, *job) for job in jobs]
    with tqdm(total=len(futures), desc=desc, unit="lang", disable=None) as bar:
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        return [f.result() for f in futures]


def _die_with_parent(parent: int) -> None:
    """A pool worker is killed when xlmr-prepare dies (Linux's PR_SET_PDEATHSIG), so that
    after a kill -9 of the main process no orphan goes on writing into DEST."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def _call(fn: Callable, *args):
    return fn(*args)


def binarize_tasks(
    todo: list[corpus.LanguageFile], scans: dict, fingerprints: dict, dest: Path, split: SplitSettings,
    shard_gb: float, threads: int,
) -> tuple[list[retrying_array.Task], dict[str, list[binarize.Shard]]]:
    """One task per language, or per shard of a language larger than `shard_gb`; and the
    shards of each sharded language, to merge once its tasks are done."""
    tasks, shards = [], {}
    for f in todo:
        common = (f.path, dest, _valid_ids(scans[f.lang], split), fingerprints[f.lang], split.skip_invalid, threads)
        count = int(np.ceil(f.path.stat().st_size / (shard_gb * 2**30)))
        if count < 2:
            tasks.append(retrying_array.Task(f.lang, binarize.binarize_language, (f.lang, *common)))
            continue
        shards[f.lang] = binarize.plan_shards(f.lang, f.path, scans[f.lang].documents, count)
        logger.info("%s: encoded as %d pieces of about %d documents", f.lang, len(shards[f.lang]), shards[f.lang][0].end)
        for shard in shards[f.lang]:
            tasks.append(retrying_array.Task(f"{f.lang}/{shard.index}", binarize.binarize_shard, (shard, *common)))
    return tasks, shards


def _valid_ids(scan: corpus.LanguageScan, split: SplitSettings) -> np.ndarray:
    return corpus.valid_document_ids(scan.lang, scan.documents, split.valid_docs, split.seed)


def _write_sample(path: Path, valid_ids: np.ndarray, indices, times, out: Path, skip_invalid: bool,
                  max_bytes: int) -> int:
    """Write the drawn lines, stopping before `max_bytes`; returns the lines written."""
    written = lines = 0
    with open(out, "wb") as f:
        for line in sampling.sample_train_lines(path, valid_ids, indices, times, skip_invalid):
            data = (line + "\n").encode("utf-8")
            if written + len(data) > max_bytes:
                break
            f.write(data)
            written, lines = written + len(data), lines + 1
    return lines


def build_vocabulary(
    dest: Path, settings: VocabularySettings, split: SplitSettings, scans: list[corpus.LanguageScan],
    pool: Executor, threads: int,
) -> dict[str, int]:
    """Train the shared unigram model on an α-smoothed sample of every language's
    training lines; returns how many sentences each language gave."""
    valid = [_valid_ids(s, split) for s in scans]
    train_lines = [s.lines - int(np.asarray(s.doc_lines)[ids].sum()) for s, ids in zip(scans, valid)]
    q = smoothed_probabilities(train_lines, settings.alpha)
    wanted = sampling.allocate(min(settings.spm_sample_lines, sum(train_lines)), q)
    work = dest / layout.PARTIAL / "spm-sample"
    work.mkdir(parents=True, exist_ok=True)
    # each language's share of the byte budget follows its share of the lines
    budget = settings.spm_memory_gb * 2**30 / vocabulary.SPM_BYTES_PER_SAMPLE_BYTE
    jobs = []
    for s, ids, available, n in zip(scans, valid, train_lines, wanted):
        rng = np.random.default_rng([split.seed, zlib.crc32(s.lang.encode()), 1])
        indices, times = sampling.choose_lines(available, int(n), rng)
        jobs.append((s.path, ids, indices, times, work / f"{s.lang}.txt", split.skip_invalid,
                     int(budget * n / max(1, wanted.sum()))))
    written = _parallel(pool, _write_sample, jobs, "vocabulary sample")
    sample = work / "all.txt"
    with open(sample, "wb") as out:
        for job in jobs:
            with open(job[4], "rb") as part:
                shutil.copyfileobj(part, out)
    given = {s.lang: int(n) for s, n in zip(scans, written)}
    logger.info("SentencePiece sample (alpha=%g): %s", settings.alpha, ", ".join(f"{k} {v}" for k, v in given.items()))
    if sum(written) < wanted.sum():
        logger.info("the sample was cut from %d to %d lines to fit --spm-memory-gb %g",
                    wanted.sum(), sum(written), settings.spm_memory_gb)
    spm_path = dest / layout.SPM_MODEL
    started = time.monotonic()
    vocabulary.train_sentencepiece(sample, spm_path, settings.vocab_size, threads, settings.character_coverage)
    logger.info("SentencePiece: %.1f MB of sample trained in %.0f s; peak memory of xlmr-prepare %.2f GB",
                sample.stat().st_size / 1e6, time.monotonic() - started,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    with open(sample, encoding="utf-8") as f:
        counts = vocabulary.piece_counts(spm_path, (line.rstrip("\n") for line in f), threads)
    layout.write_dictionary(spm_path, counts, work / layout.DICT)
    with atomic_path(dest / layout.VOCAB_RECORD) as tmp:
        record = _vocabulary_record(settings, split, [s.lang for s in scans])
        digest = layout.pair_sha256(spm_path, work / layout.DICT)
        tmp.write_text(json.dumps({**record, "sentences": given, "vocabulary_sha256": digest}, indent=1))
    os.replace(work / layout.DICT, dest / layout.DICT)  # last: its presence means done
    shutil.rmtree(work)
    return given


def _vocabulary_record(settings: VocabularySettings, split: SplitSettings, langs: list[str]) -> dict:
    """What a trained vocabulary depends on: a DEST made with other settings is refused."""
    return {
        "vocab_size": settings.vocab_size,
        "alpha": settings.alpha,
        "langs": sorted(langs),
        "seed": split.seed,
        "valid_docs": split.valid_docs,
        "character_coverage": settings.character_coverage,
        "spm_sample_lines": settings.spm_sample_lines,
        "spm_memory_gb": settings.spm_memory_gb,
    }


def install_vocabulary(dest: Path, given: GivenVocabulary) -> None:
    """Copy a given vocabulary into DEST. A DEST that already holds a different one is
    an error: its shards' ids would mean other pieces."""
    dict_path, spm_path = dest / layout.DICT, dest / layout.SPM_MODEL
    vocabulary.check_pair(given.spm_model, given.dict)
    for source, held in ((given.dict, dict_path), (given.spm_model, spm_path)):
        if held.exists() and held.read_bytes() != source.read_bytes():
            raise vocabulary.VocabularyError(
                f"{held} differs from {source}: DEST holds another vocabulary; use a new DEST or remove it"
            )
    with atomic_path(spm_path) as tmp:
        shutil.copyfile(given.spm_model, tmp)
    with atomic_path(dest / layout.VOCAB_RECORD) as tmp:
        record = {"given": {"spm_model": str(given.spm_model), "dict": str(given.dict)},
                  "vocabulary_sha256": layout.pair_sha256(spm_path, given.dict)}
        tmp.write_text(json.dumps(record))
    with atomic_path(dict_path) as tmp:
        shutil.copyfile(given.dict, tmp)


def reuse_vocabulary(dest: Path, wanted: dict) -> bool:
    """True when DEST holds a finished vocabulary to reuse, False when one must be trained;
    one trained with settings other than `wanted` (a `_vocabulary_record`) is an error."""
    dict_path = dest / layout.DICT
    if not dict_path.exists():
        return False
    record_path = dest / layout.VOCAB_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    recorded = record.get("vocabulary_sha256")
    if recorded is not None and recorded != layout.vocabulary_sha256(dest):
        raise vocabulary.VocabularyError(
            f"{dict_path} or {dest / layout.SPM_MODEL} changed after {record_path} was written: the vocabulary "
            "is not the one made or given there; restore them, or use a new DEST")
    if "given" in record:
        logger.info("reusing the vocabulary given earlier (%s)", record["given"]["spm_model"])
        return True
    differs = {k: (record.get(k), v) for k, v in wanted.items() if record.get(k) != v}
    if differs:
        detail = "; ".join(f"{k}: {old} there, {new} now" for k, (old, new) in differs.items())
        raise vocabulary.VocabularyError(
            f"{dict_path} holds a dictionary made with other settings ({detail}): use a new DEST or remove it"
        )
    logger.info("reusing the vocabulary in %s", dest)
    return True


def run(config: PrepareConfig) -> list[binarize.LanguageStats]:
    dest, split = config.dest, config.split
    files = corpus.discover(config.corpus, config.langs)
    dest.mkdir(parents=True, exist_ok=True)
    files.sort(key=lambda f: -f.path.stat().st_size)  # largest first keeps every worker busy
    context = multiprocessing.get_context("fork")  # workers inherit the imports
    with one_writer(dest, "xlmr-prepare"), ProcessPoolExecutor(
        max_workers=min(config.workers, len(files)), mp_context=context, initializer=_die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        scans: dict[str, corpus.LanguageScan] = {}

        def scan(selected: list[corpus.LanguageFile]) -> None:
            todo = [f for f in selected if f.lang not in scans]
            for s in _parallel(pool, corpus.scan, [(f, split.skip_invalid) for f in todo], "scan"):
                scans[s.lang] = s

        spm_lines = None
        if config.given is not None:
            install_vocabulary(dest, config.given)
        elif not reuse_vocabulary(dest, _vocabulary_record(config.vocabulary, split, [f.lang for f in files])):
            scan(files)
            spm_lines = build_vocabulary(dest, config.vocabulary, split, [scans[f.lang] for f in files], pool,
                                         config.workers)
        digest = layout.vocabulary_sha256(dest)  # once: it reads the whole vocabulary
        fingerprints = {f.lang: binarize.fingerprint(f.path, digest, split.valid_docs, split.seed, split.skip_invalid,
                                                    config.shard_tokens)
                        for f in files}
        done = {f.lang: binarize.finished(dest, f.lang, fingerprints[f.lang]) for f in files}
        todo = [f for f in files if done[f.lang] is None]
        scan(todo)
        on_slurm = config.executor.on_slurm
        threads = config.executor.cpus_per_task if on_slurm else max(1, config.workers // max(1, len(todo)))
        tasks, shards = binarize_tasks(todo, scans, fingerprints, dest, split, config.shard_gb, threads)
        if on_slurm:
            executor = slurm_executor.slurm_executor(config.executor, dest / ".slurm", "xlmr-binarize")
            results = retrying_array.run(executor, tasks, "binarize (SLURM array)") if tasks else []
        else:
            results = _parallel(pool, _call, [(t.fn, *t.args) for t in tasks], "binarize")
        for result in results:
            if result.lang not in shards:
                done[result.lang] = result
        for lang, parts in shards.items():
            done[lang] = binarize.merge_shards(lang, dest, parts, fingerprints[lang])
    partial = dest / layout.PARTIAL
    if partial.exists() and not any(partial.iterdir()):
        partial.rmdir()
    stats = [done[lang] for lang in sorted(done)]
    rows = report.stats_rows(stats, config.vocabulary.alpha)
    layout.write_stats(rows, dest)
    status = {f.lang: "done now" if f in todo else "already done" for f in files}
    for lang, s in scans.items():
        if s.skipped:
            status[lang] += f", {s.skipped} invalid lines skipped"
    print(report.summary_table(rows, spm_lines, status))
    print(f"\n{len(stats)} languages in {dest}: {layout.DICT}, {layout.SPM_MODEL}, {layout.STATS}, "
          f"<lang>/{{{','.join(layout.SPLITS)}}}.{{bin,idx}}")
    return stats

def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    config = parse_args(argv)
    try:
        run(config)
    except (corpus.CorpusError, vocabulary.VocabularyError, retrying_array.ArrayFailed, FolderLocked) as e:
        print(f"xlmr-prepare: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
