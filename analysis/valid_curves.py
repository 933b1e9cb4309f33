"""`python -m xlmr.analysis.valid_curves TRAIN_LOG --out PNG`: the per-language validation
curves of one run, so that a short run (the Makefile's demo) shows whether it learned.

One line per language of its validation loss in bits per masked token (the criterion logs
base-2 losses) against updates, the unweighted mean over languages in bold (the criterion's
``loss_lang_mean``, the demo's best-checkpoint metric), and, when the run's data folder is at
hand, the mean over languages of a unigram guess: the loss of predicting every masked token
from its language's training frequencies alone. Curves under that line are using context.
The log is read by `xlmr.slurm.fairseq_log`, in fairseq's json or simple format.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from xlmr.analysis.run_results import NOT_LANGS
from xlmr.slurm import fairseq_log
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import atomic_path
from xlmr_plugin.storage.token_shards import read_tokens

logger = logging.getLogger(__name__)

MEAN = "lang_mean"


@dataclass(frozen=True)
class Curves:
    """The validation records of one run, as the figure draws them."""

    run: str
    updates: list[int]  # num_updates of each validation record, increasing
    losses: dict[str, list[float]]  # language -> bits per masked token at each of `updates` (nan: not logged)
    mean: list[float]  # loss_lang_mean at each of `updates` (nan: not logged)
    data: Optional[Path]  # the task's data folder, from the config fairseq logged


def read_curves(log: Path, run: Optional[str] = None) -> Curves:
    """The validation records of `log`; a record repeated for an update (a resumed run) keeps its last."""
    log = Path(log)
    if not log.is_file():
        raise FileNotFoundError(f"{log}: no such log (fairseq-train's output, e.g. the demo's train.log)")
    by_update: dict[int, dict] = {}
    data = None
    for event in fairseq_log.events(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if isinstance(event, fairseq_log.Record) and event.tag == "valid" and "num_updates" in event.stats:
            by_update[int(event.stats["num_updates"])] = event.stats
        elif data is None and isinstance(event, fairseq_log.TrainingData):
            data = Path(event.path.split(":")[0])  # the first of fairseq's colon-separated folders
    if not by_update:
        raise ValueError(f"{log}: no validation record (fairseq logs one every --validate-interval-updates "
                         "and at the end of each epoch)")
    updates = sorted(by_update)
    langs = sorted({k[len("loss_"):] for stats in by_update.values() for k in stats
                    if k.startswith("loss_") and k[len("loss_"):] not in NOT_LANGS})
    if not langs:
        raise ValueError(f"{log}: its validation records have no per-language loss_<lang> "
                         "(trained with another criterion than xlmr_masked_lm?)")

    def series(key: str) -> list[float]:
        return [float(by_update[u].get(key, math.nan)) for u in updates]

    return Curves(run or log.resolve().parent.name, updates, {lang: series(f"loss_{lang}") for lang in langs},
                  series(f"loss_{MEAN}"), data)


def unigram_bits(data: Path, langs: list[str]) -> dict[str, float]:
    """Bits per token of each language's valid split under its first training shard's token
    frequencies (add-one smoothed over the dictionary): the loss of a model that ignores context.
    Languages without both splits in `data` are left out."""
    size = layout.dictionary_size(data)
    out = {}
    for lang in langs:
        shards = layout.train_shards(data, lang)
        valid = layout.split_prefix(data, lang, "valid")
        if not shards or not Path(f"{valid}.idx").exists():
            continue
        train, target = read_tokens(shards[0]), read_tokens(valid)
        if len(target) == 0:
            continue
        counts = np.bincount(train, minlength=size).astype(np.float64) + 1.0
        q = counts / counts.sum()
        out[lang] = float(-np.log2(q[target]).mean())
    return out


def plot_curves(curves: Curves, out: Path, unigram: Optional[dict[str, float]] = None) -> dict[str, list[tuple]]:
    """Draw `curves` into the PNG `out` (written whole or not at all); return the series drawn,
    label -> [(update, bits)], so a caller can check the picture against the log."""
    # imported here, after main's logging set-up: matplotlib logs its font search at import
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if len(curves.losses) > 10:  # the default cycle repeats its 10 colours
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    drawn: dict[str, list[tuple]] = {}
    for lang, losses in curves.losses.items():
        points = [(u, y) for u, y in zip(curves.updates, losses) if not math.isnan(y)]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1.2, label=lang)
            drawn[lang] = points
    mean = [(u, y) for u, y in zip(curves.updates, curves.mean) if not math.isnan(y)]
    if mean:
        ax.plot(*zip(*mean), color="black", linewidth=2.8, marker="o", label="mean over languages")
        drawn["mean over languages"] = mean
    if unigram:
        level = sum(unigram.values()) / len(unigram)
        ax.axhline(level, color="grey", linestyle=":", linewidth=2)
        ax.annotate(f"unigram guess, mean over {len(unigram)} languages: {level:.2f}", (0.01, level),
                    xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 4),
                    fontsize=8, color="dimgrey")
        drawn["unigram"] = [(u, level) for u in (curves.updates[0], curves.updates[-1])]
    ax.set_xlabel("updates")
    ax.set_ylabel("validation loss (bits per masked token)")
    ax.set_title(f"{curves.run}: validation loss per language, {len(curves.losses)} languages, "
                 f"{curves.updates[-1]} updates", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(drawn) > 8 else 1, loc="upper right")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return drawn


def main(argv: Optional[list[str]] = None) -> int:
    # force: importing fairseq (through xlmr_plugin) has already set the root logger to DEBUG,
    # which would print matplotlib's font search
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)
    parser = argparse.ArgumentParser(prog="python -m xlmr.analysis.valid_curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="fairseq-train's log (json or simple --log-format)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--data", type=Path, help="data folder for the unigram level (default: the one the log names)")
    parser.add_argument("--name", help="the run's name in the title (default: the log's folder)")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.data is not None and not (args.data / layout.DICT).is_file():
        parser.error(f"--data {args.data}: no {layout.DICT} (not a folder of xlmr-prepare)")
    try:
        curves = read_curves(args.log, args.name)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    data = args.data or curves.data
    unigram = None
    if data is not None and (data / layout.DICT).is_file():
        unigram = unigram_bits(data, list(curves.losses))
    else:
        logger.warning("no data folder with %s (%s): the figure has no unigram level", layout.DICT, data)
    plot_curves(curves, args.out, unigram)
    print(f"validation curves: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
