"""Has the model learned anything? Top-1 accuracy at filling masked words vs. a unigram guess.

    python -m xlmr_plugin.probing.mask_fill_accuracy CKPT DEST [--langs en,de,ru] [--max-lines 500]

On held-out lines (``DEST/<lang>/valid``), the masked items are words that are one
SentencePiece piece (a ``▁`` piece followed by a word start or the line end), so a
single prediction can be right or wrong. In every line a fixed share of those words
(at least one) is drawn with ``--seed`` and all are masked at once; the model's most
probable one-piece word is compared with the masked word. The baseline always answers the language's most
frequent one-piece word in its training split: a model that has learned nothing
beyond word frequencies scores about that.
"""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from fairseq.data import Dictionary, data_utils

from xlmr_plugin.data.sentencepiece_word_starts import sentencepiece_word_starts
from xlmr_plugin.probing.fill_mask_generator import FillMaskGenerator, fillable
from xlmr_plugin.probing.heldout_lines import load_heldout
from xlmr_plugin.probing.hub_interface import XLMR
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)


def one_piece_words(tokens: np.ndarray, is_word: np.ndarray, starts: np.ndarray, eos: int) -> np.ndarray:
    """Positions of ``tokens`` (a line or lines, each ending in ``</s>``) holding a one-piece word."""
    following = np.append(tokens[1:], eos)
    return np.flatnonzero(is_word[tokens] & (starts[following] | (following == eos)))


def word_tables(dictionary: Dictionary, mask_idx: int):
    """Per dictionary id: is it a whole-word piece, does it start a word."""
    starts = sentencepiece_word_starts(dictionary).bool().numpy()
    return fillable(dictionary, mask_idx).numpy() & starts, starts


def most_frequent_word(data: Path, lang: str, split: str, dictionary: Dictionary, is_word, starts) -> int:
    """The id of the commonest one-piece word in ``lang``'s ``split`` shard."""
    items = data_utils.load_indexed_dataset(str(layout.split_prefix(data, lang, split)), dictionary)
    if items is None:
        raise FileNotFoundError(f"language {lang}: no {split} shard in {data}")
    stream = np.concatenate([items[i].numpy() for i in range(len(items))])
    words = stream[one_piece_words(stream, is_word, starts, dictionary.eos())]
    return int(np.bincount(words, minlength=len(dictionary)).argmax())


def accuracy(xlmr: XLMR, lines, baseline: int, seed: int, share: float, batch_size: int) -> Dict[str, float]:
    """Masks ``share`` of each line's one-piece words; counts the model's and the baseline's hits."""
    dictionary, mask_idx = xlmr.task.source_dictionary, xlmr.task.mask_idx
    is_word, starts = word_tables(dictionary, mask_idx)
    # the model, like the baseline, answers with a one-piece word: which word is the question
    generator = FillMaskGenerator(dictionary, mask_idx, nbest=1, allowed=torch.from_numpy(is_word))
    inputs, targets = [], []
    for index in range(len(lines)):
        line = lines[index]
        candidates = one_piece_words(line.numpy(), is_word, starts, dictionary.eos())
        if len(candidates) == 0:
            continue
        rng = np.random.default_rng([seed, index])
        chosen = np.sort(rng.choice(candidates, max(1, round(share * len(candidates))), replace=False))
        targets.append(line[chosen].clone())
        masked = line.clone()
        masked[chosen] = mask_idx
        inputs.append(torch.cat([torch.tensor([dictionary.bos()]), masked]))
    hits = 0
    for start in range(0, len(inputs), batch_size):
        tokens = data_utils.collate_tokens(inputs[start : start + batch_size], dictionary.pad()).to(xlmr.device)
        hypos = generator.generate([xlmr.model], {"net_input": {"src_tokens": tokens}})
        for hypo, target in zip(hypos, targets[start : start + batch_size]):
            hits += int((hypo[0]["fillers"] == target).sum())
    target = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
    n = max(len(target), 1)
    return {
        "masked_words": len(target), "model": hits / n, "unigram": float((target == baseline).sum()) / n,
        "unigram_word": dictionary[baseline],
    }


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m xlmr_plugin.probing.mask_fill_accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint file")
    parser.add_argument("data", type=Path, help="xlmr-prepare's DEST: held-out and training shards")
    parser.add_argument("--langs", default="", help="comma-separated languages (default: all in DEST)")
    parser.add_argument("--split", default="valid", help="held-out split (default: valid)")
    parser.add_argument("--train-split", default="train", help="split the unigram frequencies come from")
    parser.add_argument("--max-lines", type=int, default=500, help="first N held-out lines per language")
    parser.add_argument("--share", type=float, default=0.15, help="share of one-piece words masked per line")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not 0.0 < args.share <= 1.0:
        parser.error(f"--share must be in (0, 1], got {args.share}")

    xlmr = XLMR.from_pretrained(args.checkpoint.parent, args.checkpoint.name, data_dir=args.data)
    if torch.cuda.is_available():
        xlmr.cuda()
    dictionary = xlmr.task.source_dictionary
    is_word, starts = word_tables(dictionary, xlmr.task.mask_idx)
    langs = [lang for lang in args.langs.split(",") if lang] or None
    heldout = load_heldout(args.data, langs, args.split, dictionary, xlmr.encode_line,
                           xlmr.model.max_positions() - 1, args.max_lines)
    results = {}
    for lang, lines in heldout.items():
        baseline = most_frequent_word(args.data, lang, args.train_split, dictionary, is_word, starts)
        results[lang] = accuracy(xlmr, lines, baseline, args.seed, args.share, args.batch_size)
    print(f"{'lang':<8}{'masked':>8}{'model':>9}{'unigram':>9}  unigram word")
    for lang, r in results.items():
        print(f"{lang:<8}{r['masked_words']:>8}{r['model']:>9.1%}{r['unigram']:>9.1%}  {r['unigram_word']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
