"""``xlmr-ner``: CoNLL-2002/2003 NER with a pretrained model, end to end.

    xlmr-ner CHECKPOINT --protocol cross-lingual|all --conll-dir CONLL_DIR --out OUT

reads the official files in CONLL_DIR, binarizes them with the checkpoint's
vocabulary (OUT/data), fine-tunes with the real fairseq-train (OUT/checkpoints,
checkpoint selected by dev entity F1), tags each test set (OUT/predictions/<lang>.txt,
conlleval's input format) and writes the entity precision / recall / F1 of each
language (OUT/results.md, OUT/results.json).

Protocols (XLM-R paper, Table 2):
- ``cross-lingual``: fine-tune on English (eng.train, dev eng.testa), test every
  language: English in-language, German, Spanish and Dutch zero-shot;
- ``all``: fine-tune on the four training sets together (dev: the four testa), test each.

Default recipe: XTREME's NER fine-tuning of XLM-R (google-research/xtreme,
scripts/train_panx.sh with its run_tag.py defaults): Adam (eps 1e-8, no weight
decay), lr 2e-5 decayed linearly to 0 without warmup, 10 epochs, 32 sentences per
update, gradient clipping 1.0, dropout 0.1 (encoder and head). Any further argument goes to fairseq-train
and overrides the recipe (``--fp16``, ``--num-workers``, ...).
"""
from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from xlmr.downstream.conll import Sentence, read_conll, read_predictions, write_predictions
from xlmr.downstream.finetune import Pretrained, fairseq_train, load_finetuned
from xlmr.downstream.ner_binarize import label_dictionary, write_token_classification
from xlmr_plugin.evaluation.ner_metrics import entity_scores
from xlmr.downstream.results import write_results

logger = logging.getLogger(__name__)

LANGS = ("en", "de", "es", "nl")
# official names: CoNLL-2003 eng.* and deu.*, CoNLL-2002 esp.* and ned.*
PREFIX = {"en": "eng", "de": "deu", "es": "esp", "nl": "ned"}
SUFFIX = {"train": "train", "dev": "testa", "test": "testb"}
PROTOCOLS = ("cross-lingual", "all")


def official_files(conll_dir: Path, overrides: Sequence[str] = ()) -> dict[tuple[str, str], Path]:
    """(language, split) -> file: ``CONLL_DIR/eng.train`` ... ``ned.testb``, or
    ``LANG.SPLIT=PATH`` overrides (splits train, dev, test)."""
    files = {(lang, split): conll_dir / f"{PREFIX[lang]}.{suffix}" for lang in LANGS for split, suffix in SUFFIX.items()}
    for item in overrides:
        key, sep, path = item.partition("=")
        lang, _, split = key.partition(".")
        if not sep or (lang, split) not in files:
            raise ValueError(f"--file {item!r}: expected LANG.SPLIT=PATH with LANG in {','.join(LANGS)} "
                             f"and SPLIT in {','.join(SUFFIX)}")
        files[(lang, split)] = Path(path)
    return files


def encodings(specs: Sequence[str]) -> dict[str, Optional[str]]:
    """``--encoding ENC`` (every file) or ``LANG=ENC``; absent: UTF-8, else latin-1."""
    chosen: dict[str, Optional[str]] = {lang: None for lang in LANGS}
    for spec in specs:
        lang, sep, encoding = spec.rpartition("=")
        if sep and lang not in LANGS:
            raise ValueError(f"--encoding {spec!r}: no language {lang!r} (one of {','.join(LANGS)})")
        for key in ([lang] if sep else LANGS):
            chosen[key] = encoding
    return chosen


def plan(protocol: str, test_langs: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Binarized split -> the (language, split) files it is made of."""
    train_langs = ["en"] if protocol == "cross-lingual" else list(LANGS)
    splits = {"train": [(lang, "train") for lang in train_langs], "valid": [(lang, "dev") for lang in train_langs]}
    splits.update({f"test_{lang}": [(lang, "test")] for lang in test_langs})
    return splits


def recipe(args: argparse.Namespace, train_items: int, extra: Sequence[str] = ()) -> list[str]:
    """fairseq-train flags: task, criterion, checkpoint selection, the optimisation recipe."""
    updates = math.ceil(math.ceil(train_items / args.batch_size) / args.update_freq) * args.epochs
    return [
        "--task", "xlmr_ner", "--criterion", "xlmr_ner", "--seed", str(args.seed),
        "--best-checkpoint-metric", "f1", "--maximize-best-checkpoint-metric", "--no-epoch-checkpoints",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.999)", "--adam-eps", "1e-8", "--weight-decay", "0.0",
        "--clip-norm", "1.0", "--lr", str(args.lr), "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0",
        "--total-num-update", str(updates), "--max-epoch", str(args.epochs),
        "--batch-size", str(args.batch_size), "--update-freq", str(args.update_freq),
        "--required-batch-size-multiple", "1", "--dropout", "0.1", "--attention-dropout", "0.1",
        "--pooler-dropout", "0.1",  # before the head's layers, as the 0.1 before HF's token classifier
        "--find-unused-parameters",  # the LM head gets no gradient (matters under DDP only)
        *extra,
    ]


def _max_positions(pretrained: Pretrained) -> int:
    flags = list(pretrained.model_args)
    return int(flags[flags.index("--max-positions") + 1])


def run(args: argparse.Namespace, extra: Sequence[str] = (), command: str = "") -> dict:
    """Binarize, fine-tune, predict, score; return the results record."""
    pretrained = Pretrained.locate(args.checkpoint, args.data_dir)
    files = official_files(args.conll_dir, args.file)
    encoding = encodings(args.encoding)
    splits = plan(args.protocol, args.test_langs.split(","))
    read = {key: read_conll(files[key], encoding[key[0]]) for parts in splits.values() for key in parts}
    labels = label_dictionary(s for sentences in read.values() for s in sentences)
    longest = _max_positions(pretrained) - 2  # room for <s> and </s>
    if args.window > longest:
        raise ValueError(f"--window {args.window}: the model has {longest + 2} positions, at most {longest} pieces fit")
    window = args.window or longest
    data = args.out / "data"
    stats = {
        split: write_token_classification([s for key in parts for s in read[key]], pretrained.sentencepiece,
                                          pretrained.dictionary, labels, data, split, window)
        for split, parts in splits.items()
    }
    best = fairseq_train(data, args.out / "checkpoints", pretrained, recipe(args, stats["train"].items, extra))

    model, task = load_finetuned(best, data)
    if torch.cuda.is_available() and "--cpu" not in extra:
        model.cuda()
    scores = {}
    for split in (s for s in splits if s.startswith("test_")):
        lang = split[len("test_"):]
        sentences = read[(lang, "test")]
        predicted = regroup(task.predict_tags(model, split), sentences)
        path = args.out / "predictions" / f"{lang}.txt"
        write_predictions(path, sentences, predicted)
        gold, tags = read_predictions(path)  # the scores are those of the file a user can check
        result = entity_scores(gold, tags)
        scores[lang] = {m: result[m] for m in ("precision", "recall", "f1")}
        logger.info("%s: P %.2f R %.2f F1 %.2f", lang, *scores[lang].values())
    meta = {
        "task": "NER (CoNLL-2002/2003)", "protocol": args.protocol,
        "train": " ".join(str(files[key]) for key in splits["train"]),
        "train sentences": stats["train"].sentences, "train items": stats["train"].items,
        "dev sentences": stats["valid"].sentences, "window": window,
        "checkpoint": str(pretrained.checkpoint), "finetuned": str(best),
        "metric": "entity-level precision/recall/F1, conlleval rules",
        "command": command,
    }
    return write_results(args.out, f"NER, {args.protocol}", scores, meta)


def regroup(item_tags: Sequence[Sequence[str]], sentences: Sequence[Sentence]) -> list[list[str]]:
    """Per-item tags (a long sentence's windows one after another) -> per-sentence tags."""
    flat = [tag for tags in item_tags for tag in tags]
    total = sum(len(s.words) for s in sentences)
    if len(flat) != total:
        raise ValueError(f"{len(flat)} predicted tags for {total} words: the binarized split is not these sentences")
    out, start = [], 0
    for sentence in sentences:
        out.append(flat[start:start + len(sentence.words)])
        start += len(sentence.words)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """(options, the arguments left for fairseq-train)."""
    p = argparse.ArgumentParser(prog="xlmr-ner", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                epilog="Other arguments go to fairseq-train and override the recipe.")
    p.add_argument("checkpoint", type=Path, help="pretrained checkpoint (checkpoint_best.pt or a release model.pt)")
    p.add_argument("--protocol", choices=PROTOCOLS, required=True)
    p.add_argument("--conll-dir", type=Path, required=True,
                   help="folder with eng.{train,testa,testb} and deu.* (CoNLL-2003), esp.* and ned.* (CoNLL-2002)")
    p.add_argument("--out", type=Path, required=True, help="data/, checkpoints/, predictions/, results.{md,json}")
    p.add_argument("--data-dir", type=Path, help="dict.txt and spm.model of the pretrained model "
                   "(default: beside the checkpoint, else its training data folder)")
    p.add_argument("--test-langs", default=",".join(LANGS), help="languages to test, comma-separated")
    p.add_argument("--file", action="append", default=[], metavar="LANG.SPLIT=PATH",
                   help="a file under another name, e.g. en.test=/data/conll03/test.txt (SPLIT: train, dev, test)")
    p.add_argument("--encoding", action="append", default=[], metavar="[LANG=]ENC",
                   help="e.g. latin-1 or es=latin-1; default: UTF-8, else latin-1")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32, help="sentences (windows) per batch")
    p.add_argument("--update-freq", type=int, default=1, help="batches per update (e.g. 8 x 4 for 32 per update)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--window", type=int, default=0, help="max pieces per item (default: the model's positions - 2)")
    args, extra = p.parse_known_args(argv)
    unknown = [lang for lang in args.test_langs.split(",") if lang not in LANGS]
    if unknown:
        p.error(f"--test-langs: no language {','.join(unknown)} (one of {','.join(LANGS)})")
    return args, extra


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parse_args(argv)
    record = run(args, extra, " ".join(map(shlex.quote, ["xlmr-ner", *argv])))
    logger.info("average F1 %.1f; table in %s", record["scores"]["avg"]["f1"], args.out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
