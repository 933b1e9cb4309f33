"""``xlmr-xnli --protocol P CHECKPOINT --out DIR ...``: fine-tune on NLI, test on XNLI's 15
languages, write the accuracy table (``results.md``, ``results.json``).

The paper's three protocols, one command each:

- ``cross-lingual``: train on English MultiNLI, test every language (zero-shot transfer);
- ``translate-train-all``: train on MultiNLI plus its machine translation into every other
  language (XNLI-MT ``multinli/multinli.train.<lang>.tsv``), test every language;
- ``translate-test``: train on English MultiNLI, test on each language's test set machine-
  translated into English (XNLI-MT ``xnli/xnli.test.<lang>.tsv``).

The dev set picks the checkpoint: every language's XNLI dev pairs together (English only
for translate-test), so the kept model has the best average dev accuracy, as XLM does.
Fine-tuning is fairseq's own ``sentence_prediction`` task through the real fairseq-train,
with RoBERTa's published MNLI recipe (fairseq ``examples/roberta/README.glue.md``: lr 1e-5,
batch 32, 10 epochs, 6% warmup, weight decay 0.1); any further argument goes to
fairseq-train and overrides the recipe (``--fp16``, ``--update-freq``, ...).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from xlmr.downstream.finetune import Pretrained, fairseq_train, load_finetuned
from xlmr.downstream.results import write_results
from xlmr.downstream.xnli import (
    LABELS,
    XNLI_LANGS,
    Pair,
    read_multinli,
    read_translate_test,
    read_xnli,
    read_xnli_mt,
    write_sentence_prediction,
)

logger = logging.getLogger("xlmr-xnli")

PROTOCOLS = ("cross-lingual", "translate-train-all", "translate-test")
HEAD = "xnli_head"


def training_pairs(args: argparse.Namespace) -> list[Pair]:
    """English MultiNLI, plus every other language's translation for translate-train-all."""
    pairs = read_multinli(args.mnli_dir / "multinli_1.0_train.jsonl")
    if args.protocol == "translate-train-all":
        for lang in args.langs:
            if lang != "en":
                pairs += read_xnli_mt(args.xnli_mt_dir / "multinli" / f"multinli.train.{lang}.tsv")
    return pairs


def evaluation_pairs(args: argparse.Namespace) -> tuple[list[Pair], dict[str, list[Pair]]]:
    """(dev pairs that select the checkpoint, test pairs per language)."""
    dev, test = read_xnli(args.xnli_dir / "xnli.dev.tsv"), read_xnli(args.xnli_dir / "xnli.test.tsv")
    missing = [lang for lang in args.langs if lang not in dev or lang not in test]
    if missing:
        raise ValueError(f"{args.xnli_dir}: no dev or test pairs for {', '.join(missing)}")
    if args.protocol == "translate-test":
        translated = {
            lang: read_translate_test(args.xnli_mt_dir / "xnli" / f"xnli.test.{lang}.tsv")
            for lang in args.langs if lang != "en"
        }
        return dev["en"], {lang: translated.get(lang, test[lang]) for lang in args.langs}
    return [p for lang in args.langs for p in dev[lang]], {lang: test[lang] for lang in args.langs}


def recipe(args: argparse.Namespace, train_pairs: int) -> list[str]:
    """fairseq-train flags: RoBERTa's MNLI recipe, updates counted from the data."""
    total = args.epochs * math.ceil(train_pairs / args.batch_size)
    return [
        "--task", "sentence_prediction", "--num-classes", str(len(LABELS)), "--init-token", "0",
        "--separator-token", "2", "--shorten-method", "truncate",
        "--criterion", "sentence_prediction", "--classification-head-name", HEAD,
        "--batch-size", str(args.batch_size), "--required-batch-size-multiple", "1",
        "--dropout", "0.1", "--attention-dropout", "0.1", "--weight-decay", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06", "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", str(args.lr),
        "--total-num-update", str(total), "--warmup-updates", str(max(1, round(0.06 * total))),
        "--max-epoch", str(args.epochs), "--seed", str(args.seed),
        "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
        "--no-epoch-checkpoints", "--find-unused-parameters", "--log-format", "simple",
    ]


def predict(checkpoint: Path, data: Path, split: str, batch_size: int = 64) -> list[str]:
    """The fine-tuned model's label for every pair of ``split``, in file order."""
    model, task = load_finetuned(checkpoint, data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    task.load_dataset(split)
    dataset = task.dataset(split)
    batches = task.get_batch_iterator(dataset, max_sentences=batch_size, ignore_invalid_inputs=False)
    predicted = [""] * len(dataset)
    with torch.no_grad():
        for sample in batches.next_epoch_itr(shuffle=False):
            net_input = {k: v.to(device) for k, v in sample["net_input"].items()}
            logits, _ = model(**net_input, features_only=True, classification_head_name=HEAD)
            for i, label in zip(sample["id"].tolist(), logits.argmax(-1).tolist()):
                predicted[i] = task.label_dictionary[label + task.label_dictionary.nspecial]
    return predicted


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    parser = argparse.ArgumentParser(prog="xlmr-xnli", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Other arguments go to fairseq-train and override the recipe.")
    parser.add_argument("checkpoint", type=Path, help="pretrained checkpoint (checkpoint_best.pt or a release model.pt)")
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="data, checkpoints, predictions and results go here")
    parser.add_argument("--data-dir", type=Path, help="dict.txt and spm.model of the pretrained model "
                        "(default: beside the checkpoint, else its training data folder)")
    parser.add_argument("--xnli-dir", type=Path, required=True, help="XNLI-1.0: xnli.dev.tsv, xnli.test.tsv")
    parser.add_argument("--mnli-dir", type=Path, required=True, help="multinli_1.0: multinli_1.0_train.jsonl")
    parser.add_argument("--xnli-mt-dir", type=Path, help="XNLI-MT-1.0 (translate-train-all, translate-test)")
    parser.add_argument("--langs", default=",".join(XNLI_LANGS), help="test languages (default: all 15)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=1)
    args, extra = parser.parse_known_args(argv)
    args.langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    if args.protocol != "cross-lingual" and args.xnli_mt_dir is None:
        parser.error(f"--protocol {args.protocol} needs --xnli-mt-dir")

    pretrained = Pretrained.locate(args.checkpoint, args.data_dir)
    data = args.out / "data"
    train, (dev, test) = training_pairs(args), evaluation_pairs(args)
    for split, pairs in [("train", train), ("valid", dev), *((f"test_{lang}", test[lang]) for lang in args.langs)]:
        write_sentence_prediction(pairs, pretrained.sentencepiece, pretrained.dictionary, data, split)
    logger.info("%s: %d training pairs, %d dev pairs", args.protocol, len(train), len(dev))

    best = fairseq_train(data, args.out / "checkpoints", pretrained, [*recipe(args, len(train)), *extra])
    scores = {}
    for lang in args.langs:
        predicted = predict(best, data, f"test_{lang}")
        (args.out / "predictions").mkdir(exist_ok=True)
        (args.out / "predictions" / f"{lang}.txt").write_text("".join(p + "\n" for p in predicted), encoding="utf-8")
        correct = sum(p == pair.label for p, pair in zip(predicted, test[lang]))
        scores[lang] = {"accuracy": 100.0 * correct / len(test[lang])}
    record = write_results(args.out, f"XNLI, {args.protocol}", scores, {
        "protocol": args.protocol, "checkpoint": str(pretrained.checkpoint), "fine-tuned": str(best),
        "training pairs": len(train), "dev pairs": len(dev),
    })
    logger.info("average accuracy %.1f; table in %s", record["scores"]["avg"]["accuracy"], args.out / "results.md")
    return 0
