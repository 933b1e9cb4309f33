"""``xlmr-eval-ppl CKPT DATA``: masked-LM perplexity per language, reproducibly.

fairseq-train's validation loss depends on the run's seed and epoch and uses the
80/10/10 corruption of training; this command fixes the masking with ``--seed`` (the
same positions on every run, whatever the model) and replaces every chosen token by
``<mask>``, so checkpoints, runs and released models are compared on the same
question. Masking is fairseq's ``MaskTokensDataset`` (``--mask-prob`` of each line's
positions, ``<s>`` and ``</s>`` included, as in training). Loss is in bits per
masked token, perplexity ``2 ** loss``; ``all`` pools every language's masked tokens.
"""
import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from fairseq.data import FairseqDataset, MaskTokensDataset, PrependTokenDataset, data_utils

from xlmr_plugin.probing.heldout_lines import load_heldout
from xlmr_plugin.probing.hub_interface import XLMR

logger = logging.getLogger(__name__)


def masked_lm_loss(xlmr: XLMR, lines: FairseqDataset, seed: int, mask_prob: float, batch_size: int) -> Dict[str, float]:
    """Summed NLL (nats) over the masked tokens of ``lines``, and their count."""
    dictionary, pad = xlmr.task.source_dictionary, xlmr.task.source_dictionary.pad()
    src, tgt = MaskTokensDataset.apply_mask(
        PrependTokenDataset(lines, dictionary.bos()), dictionary, pad_idx=pad, mask_idx=xlmr.task.mask_idx,
        seed=seed, mask_prob=mask_prob, leave_unmasked_prob=0.0, random_token_prob=0.0,
    )
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(lines), batch_size):
            index = range(start, min(start + batch_size, len(lines)))
            tokens = data_utils.collate_tokens([src[i] for i in index], pad).to(xlmr.device)
            target = data_utils.collate_tokens([tgt[i] for i in index], pad).to(xlmr.device)
            masked = target.ne(pad)  # B x T
            if not masked.any():
                continue
            logits, _ = xlmr.model(tokens, masked_tokens=masked)  # M x V
            nll += F.cross_entropy(logits.float(), target[masked], reduction="sum").item()
            count += int(masked.sum())
    return {"nll": nll, "masked_tokens": count, "lines": len(lines)}


def summarize(sums: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Per language and ``all``: lines, masked tokens, loss (bits per token), perplexity."""
    total = {
        "nll": sum(s["nll"] for s in sums.values()),
        "masked_tokens": sum(s["masked_tokens"] for s in sums.values()),
        "lines": sum(s["lines"] for s in sums.values()),
    }
    table = {}
    for name, s in [*sums.items(), ("all", total)]:
        loss = s["nll"] / max(s["masked_tokens"], 1) / math.log(2)
        table[name] = {"lines": s["lines"], "masked_tokens": s["masked_tokens"], "loss": loss, "ppl": 2 ** loss}
    return table


def format_table(table: Dict[str, Dict[str, float]]) -> str:
    rows = [f"{'lang':<8}{'lines':>8}{'masked':>10}{'loss':>9}{'ppl':>11}"]
    for name, r in table.items():
        rows.append(f"{name:<8}{r['lines']:>8}{r['masked_tokens']:>10}{r['loss']:>9.3f}{r['ppl']:>11.2f}")
    return "\n".join(rows)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xlmr-eval-ppl", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (a release dir's model.pt too)")
    parser.add_argument("data", type=Path, help="xlmr-prepare's DEST, a folder of <lang>.txt, or one <lang>.txt")
    parser.add_argument("--split", default="valid", help="shard split to read from a DEST (default: valid)")
    parser.add_argument("--langs", default="", help="comma-separated languages (default: all in DATA)")
    parser.add_argument("--dict-dir", type=Path, help="folder with dict.txt (default: see XLMR.from_pretrained)")
    parser.add_argument("--seed", type=int, default=1, help="masking seed: same seed, same masked positions")
    parser.add_argument("--mask-prob", type=float, default=0.15, help="share of each line's tokens to mask")
    parser.add_argument("--max-lines", type=int, help="first N lines of each language")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here ('-': stdout)")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with a GPU")
    args = parser.parse_args(argv)
    if not 0.0 < args.mask_prob < 1.0:
        parser.error(f"--mask-prob must be in (0, 1), got {args.mask_prob}")
    if not args.data.exists():
        parser.error(f"DATA: {args.data} does not exist")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stderr)
    args = parse_args(argv)
    xlmr = XLMR.from_pretrained(args.checkpoint.parent, args.checkpoint.name, data_dir=args.dict_dir)
    if torch.cuda.is_available() and not args.cpu:
        xlmr.cuda()
    langs = [lang for lang in args.langs.split(",") if lang] or None
    try:
        data = load_heldout(args.data, langs, args.split, xlmr.task.source_dictionary, xlmr.encode_line,
                            xlmr.model.max_positions() - 1, args.max_lines)
    except (FileNotFoundError, ValueError) as e:
        print(f"xlmr-eval-ppl: error: {e}", file=sys.stderr)
        return 2
    sums = {lang: masked_lm_loss(xlmr, lines, args.seed, args.mask_prob, args.batch_size) for lang, lines in data.items()}
    table = summarize(sums)
    print(format_table(table))
    if args.json is not None:
        text = json.dumps(table, indent=2)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
