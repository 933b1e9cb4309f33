"""Fill-mask "generation": what ``fairseq-interactive`` and ``XLMR.fill_mask`` run.

fairseq has no generator for masked LMs: its interactive loop asks the task for one
and prints whatever hypotheses come back. Here the k-th hypothesis of a line fills
every ``<mask>`` with its k-th most probable piece, all masks predicted in one forward
pass (independently, as in fairseq's and Hugging Face's fill-mask).
"""
from typing import Dict, List, Optional, Sequence

import torch
from fairseq.data import Dictionary
from fairseq.models import FairseqEncoderModel

from xlmr_plugin.probing.masked_text import WORD_START


def fillable(dictionary: Dictionary, mask_idx: int) -> torch.BoolTensor:
    """True for the pieces a mask may be filled with.

    ``<s> <pad> </s> <unk>``, ``<mask>``, fairseq's ``madeupword`` padding and the
    bare word-start piece ``▁`` (a space with no text, as before punctuation) would
    fill a mask with nothing readable, so they are not proposed; the probabilities of
    the others stay those of the full softmax.
    """
    allowed = torch.tensor([
        not symbol.startswith("madeupword") and symbol != WORD_START for symbol in dictionary.symbols
    ])
    allowed[: dictionary.nspecial] = False
    allowed[mask_idx] = False
    return allowed


class FillMaskGenerator:
    """The ``nbest`` fillers of each mask, as hypotheses fairseq-interactive prints.

    Each hypothesis is a dict with fairseq's keys: ``tokens`` (the line with the masks
    filled, ending in ``</s>``), ``score`` (the sum of the fillers' log-probabilities,
    natural log), ``positional_scores`` (one log-probability per mask, in order) and
    ``alignment`` (None); and ``fillers``, the chosen ids. A line without a mask gets
    no hypothesis. With several models the probabilities are averaged.
    """

    def __init__(self, dictionary: Dictionary, mask_idx: int, nbest: int, allowed: Optional[torch.Tensor] = None):
        """``allowed``: a BoolTensor over the dictionary narrowing the candidates (default: :func:`fillable`)."""
        if nbest < 1:
            raise ValueError(f"--nbest must be at least 1, got {nbest}")
        self.dictionary = dictionary
        self.mask_idx = mask_idx
        self.nbest = nbest
        self.symbols_to_strip_from_output = {dictionary.bos(), dictionary.eos()}
        self._fillable = fillable(dictionary, mask_idx) if allowed is None else allowed

    @torch.no_grad()
    def generate(self, models: Sequence[FairseqEncoderModel], sample: Dict, **unused) -> List[List[Dict]]:
        src_tokens = sample["net_input"]["src_tokens"]  # B x T, <s> ... </s> <pad>...
        masked = src_tokens.eq(self.mask_idx)
        if not masked.any():
            return [[] for _ in range(src_tokens.size(0))]
        probs = self.mask_probabilities(models, src_tokens, masked)  # M x V, M = masks in batch
        probs = probs.masked_fill(~self._fillable.to(probs.device), -1.0)
        top_p, top_ids = probs.topk(min(self.nbest, int(self._fillable.sum())), dim=-1)  # M x k
        hypos, first = [], 0
        for row, row_masked in zip(src_tokens, masked):
            n = int(row_masked.sum())
            p, ids = top_p[first : first + n], top_ids[first : first + n]  # n x k
            first += n
            tokens = row[row.ne(self.dictionary.pad())][1:]  # without <s>
            positions = tokens.eq(self.mask_idx)
            ranks = range(ids.size(1)) if n else []
            hypos.append([self._hypothesis(tokens, positions, ids[:, k], p[:, k]) for k in ranks])
        return hypos

    def mask_probabilities(
        self, models: Sequence[FairseqEncoderModel], src_tokens: torch.Tensor, masked: torch.Tensor
    ) -> torch.Tensor:
        """Softmax over the dictionary at each masked position, batch-major order: M x V."""
        total = None
        for model in models:
            logits, _ = model(src_tokens, masked_tokens=masked)  # M x V, the LM head on masks only
            probs = logits.float().softmax(dim=-1)
            total = probs if total is None else total + probs
        return total / len(models)

    @staticmethod
    def _hypothesis(tokens: torch.Tensor, positions: torch.Tensor, ids: torch.Tensor, p: torch.Tensor) -> Dict:
        filled = tokens.clone()
        filled[positions] = ids.to(filled.dtype)
        log_p = p.log()
        return {
            "tokens": filled.cpu(),
            "score": float(log_p.sum()),
            "positional_scores": log_p.cpu(),
            "alignment": None,
            "fillers": ids.cpu(),
        }
