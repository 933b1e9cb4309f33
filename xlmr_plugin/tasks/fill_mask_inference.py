"""What a masked-LM task needs for ``fairseq-interactive``: encoding, batching, filling.

fairseq's ``MaskedLMTask`` can train but not answer: it has no generator, its
interactive encoding cuts ``<mask>`` into SentencePiece pieces, and its
``build_dataset_for_inference`` goes through TokenBlockDataset's ``eos`` mode, which
uses ``np.compat`` (gone in numpy 2). This mixin supplies the three pieces; the
interactive loop, batching (``--buffer-size``, ``--batch-size``), ``--input`` and the
``S/H/D/P`` output are fairseq's own.
"""
import logging
from typing import Callable, List, Sequence, Tuple

import torch
from fairseq.data import (
    FairseqDataset,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    PrependTokenDataset,
    RightPadDataset,
)
from fairseq.data.list_dataset import ListDataset

from xlmr_plugin.probing.fill_mask_generator import FillMaskGenerator
from xlmr_plugin.probing.masked_text import MASK, encode_masked

logger = logging.getLogger(__name__)


class FillMaskInference:
    """Mixin for a MaskedLMTask subclass (``self.dictionary``, ``self.mask_idx``)."""

    def build_generator(self, models, args, **unused) -> FillMaskGenerator:
        return FillMaskGenerator(self.dictionary, self.mask_idx, nbest=args.nbest)

    def get_interactive_tokens_and_lengths(
        self, lines: Sequence[str], encode_fn: Callable[[str], str]
    ) -> Tuple[List[torch.Tensor], List[int]]:
        """Encode each line span by span around its masks, as the HF tokenizer does."""
        tokens = []
        for line in lines:
            if MASK not in line:
                logger.warning("no %s in input line %r: nothing to fill", MASK, line)
            tokens.append(encode_masked(line, encode_fn, self.dictionary))
        return tokens, [t.numel() for t in tokens]

    def build_dataset_for_inference(
        self, src_tokens: List[torch.Tensor], src_lengths: List[int], **unused
    ) -> FairseqDataset:
        """One line per item: ``<s> ... </s>``, right-padded; sizes count the ``<s>``."""
        lines = PrependTokenDataset(ListDataset(src_tokens, src_lengths), self.dictionary.bos())
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(lines, pad_idx=self.dictionary.pad()),
                    "src_lengths": NumelDataset(lines, reduce=False),
                },
            },
            sizes=[lines.sizes],
        )

    def inference_step(self, generator: FillMaskGenerator, models, sample, **unused):
        return generator.generate(models, sample)
