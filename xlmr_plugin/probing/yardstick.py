"""``xlmr-yardstick CHECKPOINT SET``: a checkpoint's translation retrieval and zero-shot
transfer on a cross-lingual set (``xlmr-probe-data --kind gettext``), each beside the
random-initialisation floor of the same architecture and vocabulary.

    xlmr-yardstick demo/checkpoints/checkpoint_best.pt probe/gettext [--data DEST] [--json OUT]

The figures are those ``--downstream-probe NAME:SET`` logs during training (same
features, same floor seed), per language and as means over the translated languages.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import torch

from xlmr_plugin.evaluation.crosslingual_set import ENGLISH, is_crosslingual_set, load_crosslingual_set
from xlmr_plugin.evaluation.crosslingual_yardstick import (
    YardstickScores, random_init_model, score_model, text_encoder,
)
from xlmr_plugin.probing.hub_interface import XLMR

logger = logging.getLogger(__name__)


def table(model: YardstickScores, floor: YardstickScores, pairs: dict) -> str:
    """One row per language: pairs, retrieval and transfer (%) with their floors; the means last."""
    lines = [f"{'lang':<6}{'pairs':>6}{'retrieval':>11}{'floor':>8}{'transfer':>10}{'floor':>8}"]
    for lang in [ENGLISH, *model.retrieval]:
        retrieval = (f"{model.retrieval[lang]:>11.1f}{floor.retrieval[lang]:>8.1f}" if lang in model.retrieval
                     else f"{'-':>11}{'-':>8}")
        transfer = (f"{model.transfer[lang]:>10.1f}{floor.transfer[lang]:>8.1f}" if lang in model.transfer
                    else f"{'-':>10}{'-':>8}")
        lines.append(f"{lang:<6}{pairs.get(lang, '-'):>6}{retrieval}{transfer}")
    lines.append(f"{'mean':<6}{'':>6}{model.retrieval_mean:>11.1f}{floor.retrieval_mean:>8.1f}"
                 f"{model.transfer_mean:>10.1f}{floor.transfer_mean:>8.1f}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="xlmr-yardstick", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (or a release's model.pt)")
    parser.add_argument("set", type=Path, help="cross-lingual set folder, from xlmr-probe-data --kind gettext")
    parser.add_argument("--data", type=Path, help="folder with dict.txt and the SentencePiece model "
                                                  "(default: the checkpoint's folder, else its training data)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"checkpoint {args.checkpoint}: no such file")
    if not is_crosslingual_set(args.set):
        parser.error(f"set {args.set}: not a cross-lingual set (no crosslingual.json); "
                     "build one with xlmr-probe-data DEST --kind gettext --out DIR")
    data = load_crosslingual_set(args.set)

    xlmr = XLMR.from_pretrained(args.checkpoint.parent, args.checkpoint.name, data_dir=args.data)
    if torch.cuda.is_available():
        xlmr.cuda()
    dictionary = xlmr.task.source_dictionary
    encode = text_encoder(xlmr.cfg.bpe.sentencepiece_model, dictionary, xlmr.model.max_positions() - 1)
    bos, pad = dictionary.bos(), dictionary.pad()
    model = score_model(xlmr.model, data, encode, bos, pad)
    untrained = random_init_model(lambda: xlmr.task.build_model(xlmr.cfg.model), like=xlmr.model)
    floor = score_model(untrained, data, encode, bos, pad)

    pairs = {lang: len(p) for lang, p in data.retrieval.items()}
    print(f"{args.checkpoint} on {args.set}: accuracy (%), random-init floor beside it; "
          f"transfer over {len(data.domains)} domains ({', '.join(data.domains)}), "
          f"fitted on {len(data.transfer_train)} English sentences")
    print(table(model, floor, pairs))
    if args.json:
        figures = {
            "checkpoint": str(args.checkpoint), "set": str(args.set), "domains": data.domains, "pairs": pairs,
            "retrieval": {lang: {"model": model.retrieval[lang], "floor": floor.retrieval[lang]}
                          for lang in model.retrieval},
            "transfer": {lang: {"model": model.transfer[lang], "floor": floor.transfer[lang]}
                         for lang in model.transfer},
            "mean": {"retrieval": {"model": model.retrieval_mean, "floor": floor.retrieval_mean},
                     "transfer": {"model": model.transfer_mean, "floor": floor.transfer_mean}},
        }
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
