"""``xlmr-probe-data DEST --out DIR --mnli-dir ... --xnli-dir ...``: the fixed XNLI subset
that scores pretraining checkpoints (``--downstream-probe xnli:DIR``).

As the paper's cross-lingual transfer: the probe is fitted on English MultiNLI pairs
(``train``) and scored on XNLI dev pairs of every language (``valid``). XNLI's languages
are translations of the same pairs, so the same pair indices are drawn for each language
and the score averages the languages equally. Binarized with the pretraining data's
SentencePiece model and dict.txt (DEST, as written by xlmr-prepare).
"""
from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Optional, Sequence

from xlmr.downstream.xnli import XNLI_LANGS, read_multinli, read_xnli, write_sentence_prediction
from xlmr_plugin.evaluation.linear_probe import SPLITS
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import publish_directory

logger = logging.getLogger("xlmr-probe-data")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    parser = argparse.ArgumentParser(prog="xlmr-probe-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the pretraining data folder: dict.txt and spm.model")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mnli-dir", type=Path, required=True, help="multinli_1.0: multinli_1.0_train.jsonl")
    parser.add_argument("--xnli-dir", type=Path, required=True, help="XNLI-1.0: xnli.dev.tsv")
    parser.add_argument("--langs", default=",".join(XNLI_LANGS), help="languages scored (default: all 15)")
    parser.add_argument("--train-pairs", type=int, default=2000, help="English pairs the probe is fitted on")
    parser.add_argument("--valid-pairs", type=int, default=200, help="dev pairs scored per language")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
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

    tmp = args.out.with_name(args.out.name + ".tmp")
    spm_model = layout.find_spm(args.dest, names=layout.RELEASE_SPM_NAMES)
    for split, pairs in zip(SPLITS, (train, valid)):
        write_sentence_prediction(pairs, spm_model, args.dest / layout.DICT, tmp, split)
    publish_directory(tmp, args.out)
    logger.info("%s: %d English pairs to fit, %d dev pairs in each of %d languages to score",
                args.out, len(train), len(picked), len(langs))
    return 0
