"""The paper's analyses as named sweeps: `xlmr-sweep DATA --study NAME --sweep-dir DIR`.

A study turns its values (`--study-values`, or the paper's) into runs, each a set of
fairseq-train options and a `run.json` that says what the run varies, so that
`xlmr-report` can put the runs of a study on one axis:

- alpha:    --multilang-sampling-alpha over 0.1 0.3 0.7 1.0 (paper: 0.3 balances high-
            and low-resource languages)
- curse:    nested language sets (3 7 15 25 languages, always holding the core ones) at
            a fixed width (paper: beyond 7-15 languages, per-language quality falls)
- capacity: the same sets, the width growing a quarter of the base width per set
            (paper: 768 -> 960 -> 1152 recovers the loss)
- vocab:    vocabularies of 32k 64k 128k 256k pieces, each prepared by xlmr-prepare
            from DATA, here the raw corpus, into DIR/data/vocab=<size>/; the width is
            chosen so the parameter count stays within 2% of the first vocabulary's
            (paper: 32k -> 256k gives +2.8% XNLI)
- schedules: the XLM-R recipe against each schedule of the plugin (annealed α, UniMax,
            annealed masking, warmup-stable-decay) and all together, at equal CPU-minutes,
            times --seeds (analysis/schedules_study.py)
"""
from __future__ import annotations

import argparse
import logging
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from xlmr_plugin.models.shapes import SHAPES, Shape
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.storage.layout import DICT, dictionary_size, read_stats
from xlmr.analysis import schedules_study
from xlmr.analysis.capacity import scaled_shape, shape_for_parameters
from xlmr.slurm import arguments

logger = logging.getLogger(__name__)

DEFAULT_VALUES = {
    "alpha": ["0.1", "0.3", "0.7", "1.0"],
    "curse": ["3", "7", "15", "25"],
    "capacity": ["3", "7", "15", "25"],
    "vocab": ["32000", "64000", "128000", "256000"],
    "schedules": list(schedules_study.CONFIGS),
}
# what each study puts on the x axis of its figure
AXES = {
    "alpha": "language sampling exponent α",
    "curse": "languages in training (fixed width)",
    "capacity": "languages in training (width scaled)",
    "vocab": "vocabulary size (pieces)",
    "schedules": "schedule",
}


@dataclass
class StudyRun:
    """One run of a study: its directory name, data, fairseq options and what it varies; `after`:
    commands its job runs once training is done (scoring), `threads`: the job's CPU threads."""

    name: str
    data: Path
    options: list[tuple[str, str]]
    meta: dict = field(default_factory=dict)
    after: list[list[str]] = field(default_factory=list)
    threads: Optional[int] = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("studies (--study NAME instead of --grid)")
    group.add_argument("--study", choices=sorted(DEFAULT_VALUES), help="one of the paper's analyses; see analysis/studies.py")
    group.add_argument("--study-values", nargs="+", metavar="V",
                       help="the study's values: alphas, language counts, vocabulary sizes or schedules "
                            "(default: the paper's; schedules: all)")
    group.add_argument("--core-langs", help="curse/capacity: the languages every set holds and the report follows "
                                            "(default: the largest languages, as many as the smallest set)")
    group.add_argument("--prepare-options", default="",
                       help="vocab: more xlmr-prepare options, one string, e.g. '--langs en,de --valid-docs 20'")
    schedules_study.add_arguments(group)


def base_shape(extra: list[str], preset: Optional[str]) -> tuple[str, Shape]:
    """The architecture the runs start from: --arch (or the preset's), the preset's sizes, then
    any size flag in `extra`."""
    recipe = RECIPES[preset] if preset else None
    arch = arguments.flag_value(extra, "--arch") or (recipe.arch if recipe else None)
    if arch not in SHAPES:
        raise ValueError(f"--arch {arch}: a study needs one of the xlmr_* shapes {', '.join(SHAPES)}")
    shape = recipe.shape if recipe and recipe.shape and recipe.arch == arch else SHAPES[arch]
    value = lambda flag, default: int(arguments.flag_value(extra, flag) or default)  # noqa: E731
    return arch, replace(shape, layers=value("--encoder-layers", shape.layers),
                         width=value("--encoder-embed-dim", shape.width),
                         heads=value("--encoder-attention-heads", shape.heads),
                         ffn=value("--encoder-ffn-embed-dim", shape.ffn))


def _shape_options(shape: Shape) -> list[tuple[str, str]]:
    return [("encoder-embed-dim", str(shape.width)), ("encoder-attention-heads", str(shape.heads)),
            ("encoder-ffn-embed-dim", str(shape.ffn))]


def alpha_runs(args: argparse.Namespace, values: list[str], extra: list[str]) -> list[StudyRun]:
    return [StudyRun(f"alpha={v}", args.data, [("multilang-sampling-alpha", v)], {"x": float(v)}) for v in values]


def language_sets(stats: dict[str, dict], sizes: list[int], core: Optional[str]) -> tuple[list[str], list[list[str]]]:
    """Nested language sets: the core languages, then the others from the largest down."""
    by_size = sorted(stats, key=lambda lang: (-stats[lang]["train_tokens"], lang))
    core_langs = core.split(",") if core else by_size[:min(sizes)]
    missing = [lang for lang in core_langs if lang not in stats]
    if missing:
        raise ValueError(f"--core-langs: {','.join(missing)} not in the data (languages: {','.join(by_size)})")
    if max(sizes) > len(stats) or min(sizes) < len(core_langs):
        raise ValueError(f"--study-values: sets of {len(core_langs)} to {len(stats)} languages are possible, "
                         f"got {sizes}")
    order = core_langs + [lang for lang in by_size if lang not in core_langs]
    return core_langs, [order[:n] for n in sorted(sizes)]


def multilingual_runs(scaled: bool) -> Callable[[argparse.Namespace, list[str], list[str]], list[StudyRun]]:
    def runs(args: argparse.Namespace, values: list[str], extra: list[str]) -> list[StudyRun]:
        core, sets = language_sets(read_stats(args.data), [int(v) for v in values], args.core_langs)
        arch, base = base_shape(extra, args.preset)
        result = []
        for step, langs in enumerate(sets):
            shape = scaled_shape(base, step) if scaled else base
            options = [("langs", ",".join(langs))] + (_shape_options(shape) if scaled else [])
            meta = {"x": len(langs), "core_langs": core, "width": shape.width, "arch": arch,
                    "parameters": shape.parameters(dictionary_size(args.data))}
            result.append(StudyRun(f"langs={len(langs)}", args.data, options, meta))
        return result

    return runs


def vocab_runs(args: argparse.Namespace, values: list[str], extra: list[str]) -> list[StudyRun]:
    """One xlmr-prepare of DATA (the raw corpus) per vocabulary size under SWEEP/data/, then
    widths that keep the parameter count of the first vocabulary at the base width."""
    from xlmr.preprocess import prepare

    if (Path(args.data) / DICT).exists():
        raise ValueError(f"--study vocab prepares each vocabulary itself: DATA must be the raw corpus, "
                         f"not the prepared {args.data}")
    arch, base = base_shape(extra, args.preset)
    sizes = [int(v) for v in values]
    prepared = []
    for size in sizes:
        dest = args.sweep_dir / "data" / f"vocab={size}"
        argv = [str(args.data), str(dest), "--vocab-size", str(size), *shlex.split(args.prepare_options)]
        if args.executor == "slurm":  # binarize as a job array too
            argv += ["--executor", "slurm", "--time", str(args.time_min), "--cpus-per-task", str(args.cpus_per_task)]
            argv += [t for key in ("partition", "account", "qos") if getattr(args, key) for t in (f"--{key}", getattr(args, key))]
        logger.info("vocabulary %d: xlmr-prepare %s", size, " ".join(argv))
        if prepare.main(argv) != 0:
            raise RuntimeError(f"xlmr-prepare failed for --vocab-size {size}: see its log above")
        prepared.append(dest)
    target = base.parameters(dictionary_size(prepared[0]))
    result = []
    for size, dest in zip(sizes, prepared):
        vocab = dictionary_size(dest)
        shape = base if dest == prepared[0] else shape_for_parameters(base, vocab, target)
        meta = {"x": size, "embeddings": vocab, "width": shape.width, "ffn": shape.ffn, "arch": arch,
                "parameters": shape.parameters(vocab), "target_parameters": target}
        logger.info("vocabulary %d: width %d, FFN %d, %s parameters (target %s)", size, shape.width, shape.ffn,
                    f"{meta['parameters']:,}", f"{target:,}")
        result.append(StudyRun(f"vocab={size}", dest, _shape_options(shape), meta))
    return result


STUDIES = {
    "alpha": alpha_runs,
    "curse": multilingual_runs(scaled=False),
    "capacity": multilingual_runs(scaled=True),
    "vocab": vocab_runs,
    "schedules": schedules_study.schedule_runs,
}


def study_runs(args: argparse.Namespace, extra: list[str]) -> list[StudyRun]:
    """The runs of `args.study`, each with the study's name and axis in its metadata."""
    values = args.study_values or DEFAULT_VALUES[args.study]
    runs = STUDIES[args.study](args, values, extra)
    for run in runs:
        run.meta.update(study=args.study, x_label=AXES[args.study])
    return runs
