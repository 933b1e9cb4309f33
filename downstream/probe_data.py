"""``xlmr-probe-data DEST --out DIR [--kind xnli|gettext]``: fixed downstream data that
scores pretraining checkpoints (``--downstream-probe NAME:DIR``).

``--kind xnli`` (``--mnli-dir ... --xnli-dir ...``), as the paper's cross-lingual transfer: the probe is fitted on English MultiNLI pairs
(``train``) and scored on XNLI dev pairs of every language (``valid``). XNLI's languages
are translations of the same pairs, so the same pair indices are drawn for each language
and the score averages the languages equally. Binarized with the pretraining data's
SentencePiece model and dict.txt (DEST, as written by xlmr-prepare).

``--kind gettext``: the cross-lingual set (``evaluation/crosslingual_set.py``) built from
the gettext catalogues installed on this machine (``downstream/gettext_catalogues.py``),
for DEST's languages that have catalogues; no download. It is text: each model encodes
it with its own vocabulary when scored. Same catalogues, same flags: the same files.
"""
from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Optional, Sequence

from xlmr.downstream.gettext_catalogues import LOCALE_ROOT, Filters, Sizes, build_crosslingual_set, knobs
from xlmr.downstream.xnli import XNLI_LANGS, read_multinli, read_xnli, write_sentence_prediction
from xlmr_plugin.evaluation.linear_probe import SPLITS
from xlmr_plugin.storage import layout
from xlmr_plugin.evaluation.crosslingual_set import write_crosslingual_set
from xlmr_plugin.storage.atomic import publish_directory, staging_directory

logger = logging.getLogger("xlmr-probe-data")


KINDS = ("xnli", "gettext")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    parser = argparse.ArgumentParser(prog="xlmr-probe-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the pretraining data folder: dict.txt and spm.model (xnli), "
                                                "its language folders (gettext)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kind", choices=KINDS, default="xnli",
                        help="xnli: the XNLI subset (--mnli-dir, --xnli-dir); gettext: the cross-lingual set "
                             "from the machine's gettext catalogues")
    parser.add_argument("--mnli-dir", type=Path, help="xnli: multinli_1.0 (multinli_1.0_train.jsonl)")
    parser.add_argument("--xnli-dir", type=Path, help="xnli: XNLI-1.0 (xnli.dev.tsv)")
    parser.add_argument("--langs", help="languages scored (xnli default: all 15; gettext default: DEST's)")
    parser.add_argument("--train-pairs", type=int, default=2000, help="xnli: English pairs the probe is fitted on")
    parser.add_argument("--valid-pairs", type=int, default=200, help="xnli: dev pairs scored per language")
    parser.add_argument("--seed", type=int, default=1)
    add_gettext_arguments(parser)
    args = parser.parse_args(argv)
    if args.kind == "gettext":
        return build_gettext(parser, args)
    if args.mnli_dir is None or args.xnli_dir is None:
        parser.error("--kind xnli needs --mnli-dir and --xnli-dir")

    langs = [lang.strip() for lang in (args.langs or ",".join(XNLI_LANGS)).split(",") if lang.strip()]
    rng = random.Random(args.seed)
    train = read_multinli(args.mnli_dir / "multinli_1.0_train.jsonl")
    train = rng.sample(train, min(args.train_pairs, len(train)))
    dev = read_xnli(args.xnli_dir / "xnli.dev.tsv")
    missing = [lang for lang in langs if lang not in dev]
    if missing:
        parser.error(f"{args.xnli_dir / 'xnli.dev.tsv'} has no pairs for {', '.join(missing)}")
    size = min(len(dev[lang]) for lang in langs)
    picked = sorted(rng.sample(range(size), min(args.valid_pairs, size)))
    valid = [dev[lang][i] for lang in langs for i in picked]

    tmp = staging_directory(args.out)
    spm_model = layout.find_spm(args.dest, names=layout.RELEASE_SPM_NAMES)
    for split, pairs in zip(SPLITS, (train, valid)):
        write_sentence_prediction(pairs, spm_model, args.dest / layout.DICT, tmp, split)
    publish_directory(tmp, args.out)
    logger.info("%s: %d English pairs to fit, %d dev pairs in each of %d languages to score",
                args.out, len(train), len(picked), len(langs))
    return 0


def add_gettext_arguments(parser: argparse.ArgumentParser) -> None:
    """The knobs of ``Filters`` and ``Sizes``, their defaults taken from there."""
    group = parser.add_argument_group("gettext")
    group.add_argument("--locale-root", type=Path, default=LOCALE_ROOT, help="where the catalogues are")
    for kind in (Filters, Sizes):
        for name, (default, text) in knobs(kind).items():
            group.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=text)


def build_gettext(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.langs:
        langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    elif args.dest.is_dir():
        langs = layout.languages(args.dest)
    else:
        parser.error(f"{args.dest}: not a data folder; give one, or --langs")
    if not args.locale_root.is_dir():
        parser.error(f"--locale-root {args.locale_root}: no such folder")
    for kind in (Filters, Sizes):
        for name in knobs(kind):
            if getattr(args, name) < 0 or (getattr(args, name) == 0 and name != "min_pairs"):
                parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.test_percent < 100:
        parser.error(f"--test-percent must be between 0 and 100, got {args.test_percent}")
    filters = Filters(**{name: getattr(args, name) for name in knobs(Filters)})
    sizes = Sizes(**{name: getattr(args, name) for name in knobs(Sizes)})
    try:
        data = build_crosslingual_set(langs, args.locale_root, filters, sizes)
    except ValueError as error:  # no language with enough pairs
        parser.error(str(error))
    tmp = staging_directory(args.out)
    write_crosslingual_set(tmp, data)
    publish_directory(tmp, args.out)
    logger.info("%s: retrieval pairs %s; transfer: %d domains (%s), %d English sentences to fit, %s to score",
                args.out, " ".join(f"{lang} {len(p)}" for lang, p in data.retrieval.items()), len(data.domains),
                ", ".join(data.domains), len(data.transfer_train),
                " ".join(f"{lang} {len(p)}" for lang, p in data.transfer_test.items()))
    return 0
