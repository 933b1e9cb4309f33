"""``xlmr-mlqa``: the paper's zero-shot MLQA protocol, end to end.

Fine-tune on English SQuAD v1.1 (``train-v1.1.json``) with the real fairseq-train, then
predict on MLQA for each language with context language = question language
(``{split}-context-<l>-question-<l>.json``) and score with MLQA's EM / F1. SQuAD's
``dev-v1.1.json``, if given, is the validation set (checkpoint_best by its loss) and is
scored with SQuAD's own metric; otherwise MLQA's English dev file validates. Output:
``OUT/predictions/<name>.json`` (``{id: answer}``, the official scripts' input) and
``OUT/results.{md,json}``.

Default recipe: google-research/xtreme ``scripts/train_qa.sh`` for XLM-R (lr 3e-5, batch
4 x 8 accumulated = 32, 3 epochs, 500 warmup updates, weight decay 1e-4, max_seq_length
384, doc_stride 128) with HF ``run_squad.py``'s defaults it runs (Adam eps 1e-8, linear
decay, max_query_length 64, max_answer_length 30, n_best_size 20).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from xlmr_plugin.storage.atomic import atomic_path

from xlmr.downstream.finetune import Pretrained, fairseq_train, load_finetuned
from xlmr.downstream.qa_features import PieceEncoder, WindowConfig, best_spans, write_qa_split
from xlmr.downstream.qa_metrics import MLQA_LANGS, mlqa_score, squad_score
from xlmr.downstream.results import write_results
from xlmr.downstream.squad import mlqa_path, read_squad

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QaRecipe:
    """The fine-tuning's optimisation, passed to fairseq-train by ``recipe``."""

    lr: float
    batch_size: int  # windows per step and GPU
    update_freq: int  # steps accumulated per update
    epochs: int
    warmup_updates: int
    weight_decay: float
    seed: int
    train_args: tuple[str, ...]  # the flags xlmr-mlqa does not know, passed on to fairseq-train last


@dataclass(frozen=True)
class PredictionSettings:
    """How answers are read off the fine-tuned model's start and end logits."""

    eval_batch_size: int
    n_best: int  # start and end candidates per window
    max_answer_length: int  # longest predicted answer, in pieces


@dataclass(frozen=True)
class MlqaConfig:
    """One ``xlmr-mlqa`` run, parsed and checked once by ``parse_args``."""

    checkpoint: Path
    squad_train: Path
    squad_dev: Optional[Path]  # None: MLQA's English dev file validates and is not scored
    mlqa: Path
    split: str  # the MLQA split scored: test or dev
    langs: tuple[str, ...]
    out: Path
    data_dir: Optional[Path]
    windows: WindowConfig
    recipe: QaRecipe
    prediction: PredictionSettings

    @property
    def on_cpu(self) -> bool:
        return "--cpu" in self.recipe.train_args


def parse_args(argv: Optional[Sequence[str]]) -> MlqaConfig:
    """The command's own flags; the ones it does not know go to fairseq-train (``QaRecipe.train_args``)."""
    p = argparse.ArgumentParser(prog="xlmr-mlqa", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="pretrained checkpoint (training run or release model.pt)")
    p.add_argument("--squad-train", type=Path, required=True, help="SQuAD v1.1 train-v1.1.json")
    p.add_argument("--squad-dev", type=Path, help="SQuAD v1.1 dev-v1.1.json: validation set, scored too")
    p.add_argument("--mlqa", type=Path, required=True, help="MLQA_V1 folder (holding dev/ and test/)")
    p.add_argument("--split", choices=["test", "dev"], default="test", help="MLQA split scored")
    p.add_argument("--langs", default=",".join(MLQA_LANGS), help="MLQA languages scored")
    p.add_argument("--out", type=Path, required=True, help="output folder: data/, checkpoints/, predictions/, results")
    p.add_argument("--data-dir", type=Path, help="dict.txt and spm.model of the pretrained model, if not beside "
                                                 "the checkpoint or in the data folder it was trained on")
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--max-answer-length", type=int, default=30, help="longest predicted answer, in pieces")
    p.add_argument("--n-best", type=int, default=20, help="start and end candidates per window")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32, help="windows per step and GPU")
    p.add_argument("--update-freq", type=int, default=1, help="steps accumulated per update (XTREME: 4 x 8)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup-updates", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-batch-size", type=int, default=64)
    # the rest goes to fairseq-train: '--fp16', '--update-freq 8', '--cpu', '--find-unused-parameters'
    args, train_args = p.parse_known_args(argv)
    langs = tuple(lang for lang in args.langs.split(",") if lang)
    unknown = sorted(set(langs) - set(MLQA_LANGS))
    if unknown:
        p.error(f"--langs: MLQA has no {', '.join(unknown)} (it has {', '.join(MLQA_LANGS)})")
    return MlqaConfig(
        checkpoint=args.checkpoint, squad_train=args.squad_train, squad_dev=args.squad_dev, mlqa=args.mlqa,
        split=args.split, langs=langs, out=args.out, data_dir=args.data_dir,
        windows=WindowConfig(args.max_seq_length, args.doc_stride, args.max_query_length),
        recipe=QaRecipe(args.lr, args.batch_size, args.update_freq, args.epochs, args.warmup_updates,
                        args.weight_decay, args.seed, tuple(train_args)),
        prediction=PredictionSettings(args.eval_batch_size, args.n_best, args.max_answer_length),
    )


def recipe(settings: QaRecipe, train_windows: int) -> list[str]:
    """fairseq-train flags of the fine-tuning; linear decay to 0 over all epochs' updates
    (counted for one GPU: on several, pass fairseq's --total-num-update and --max-update too)."""
    total = math.ceil(train_windows / (settings.batch_size * settings.update_freq)) * settings.epochs
    return [
        "--task", "xlmr_squad", "--criterion", "xlmr_squad",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.999)", "--adam-eps", "1e-8",
        "--weight-decay", str(settings.weight_decay), "--lr", str(settings.lr), "--lr-scheduler", "polynomial_decay",
        "--warmup-updates", str(min(settings.warmup_updates, max(total - 1, 0))), "--total-num-update", str(total),
        "--max-update", str(total), "--max-epoch", str(settings.epochs), "--batch-size", str(settings.batch_size),
        "--update-freq", str(settings.update_freq), "--required-batch-size-multiple", "1", "--seed", str(settings.seed),
        "--no-epoch-checkpoints", "--num-workers", "0", "--log-format", "json", "--log-interval", "10", *settings.train_args,
    ]


@torch.no_grad()
def predict(model, task, split: str, meta: dict, settings: PredictionSettings) -> dict[str, str]:
    """{question id: answer text} over the windows of ``split``."""
    task.load_dataset(split)
    dataset = task.datasets[split]
    device = next(model.parameters()).device
    starts: list = [None] * len(dataset)
    ends: list = [None] * len(dataset)
    batches = task.get_batch_iterator(dataset, max_sentences=settings.eval_batch_size, ignore_invalid_inputs=False)
    for sample in batches.next_epoch_itr(shuffle=False):
        tokens = sample["net_input"]["src_tokens"].to(device)
        logits, _ = model(tokens, features_only=True, classification_head_name=task.cfg.head_name)
        logits = logits.float().cpu().numpy()  # B x T x 2
        for row, index in enumerate(sample["id"].tolist()):
            length = int(sample["net_input"]["src_lengths"][row])
            starts[index], ends[index] = logits[row, :length, 0], logits[row, :length, 1]
    return best_spans(meta, starts, ends, settings.n_best, settings.max_answer_length)


def save_predictions(path: Path, predictions: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    config = parse_args(argv)
    pretrained = Pretrained.locate(config.checkpoint, config.data_dir)
    pieces = PieceEncoder(pretrained.sentencepiece, pretrained.dictionary)
    windows = config.windows
    data = config.out / "data"
    mlqa = {lang: mlqa_path(config.mlqa, config.split, lang) for lang in config.langs}  # every file, before training
    valid = config.squad_dev or mlqa_path(config.mlqa, "dev", "en")
    train = read_squad(config.squad_train, training=True)
    train_windows = write_qa_split(train, pieces, windows, data, "train")
    evaluated = {"valid": read_squad(valid)}
    write_qa_split(evaluated["valid"], pieces, windows, data, "valid")
    for lang, path in mlqa.items():
        evaluated[f"mlqa_{lang}"] = read_squad(path)
        write_qa_split(evaluated[f"mlqa_{lang}"], pieces, windows, data, f"mlqa_{lang}")

    best = fairseq_train(data, config.out / "checkpoints", pretrained, recipe(config.recipe, train_windows))
    model, task = load_finetuned(best, data)
    if torch.cuda.is_available() and not config.on_cpu:
        model.cuda()

    scores, meta = {}, {"protocol": f"zero-shot: SQuAD v1.1 train (en) -> MLQA {config.split}, context = question language",
                        "checkpoint": str(config.checkpoint), "fine-tuned": str(best),
                        "command": "xlmr-mlqa " + " ".join(shlex.quote(str(a)) for a in (sys.argv[1:] if argv is None else argv)),
                        # answers whose answer_start does not point at their text (training drops them)
                        "answers_not_in_context": {str(f.path): f.mismatched for f in (train, *evaluated.values())}}
    splits = ["valid"] * bool(config.squad_dev) + [f"mlqa_{lang}" for lang in config.langs]
    for split in splits:
        source = evaluated[split]
        split_meta = json.loads((data / f"{split}.windows.json").read_text(encoding="utf-8"))
        predictions = predict(model, task, split, split_meta, config.prediction)
        name = "squad_dev" if split == "valid" else f"mlqa_{config.split}_{split[5:]}"
        save_predictions(config.out / "predictions" / f"{name}.json", predictions)
        if split == "valid":
            meta["squad_dev"] = {k: round(v, 2) for k, v in squad_score(predictions, source.golds()).items()}
            continue
        score = mlqa_score(predictions, source.golds(), split[5:])
        scores[split[5:]] = {"exact_match": score["exact_match"], "f1": score["f1"]}
        meta[f"questions_{split[5:]}"] = score["questions"]
        logger.info("%s: EM %.1f F1 %.1f (%d questions)", name, score["exact_match"], score["f1"], score["questions"])
    write_results(config.out, f"MLQA {config.split}, zero-shot from English", scores, meta)
    logger.info("results: %s", config.out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
