"""What a masked-LM task needs for ``fairseq-interactive``: encoding, batching, filling.

fairseq's ``MaskedLMTask`` can train but not answer: it has no generator, its
interactive encoding cuts ``<mask>`` into SentencePiece pieces, and its
``build_dataset_for_inference`` goes through TokenBlockDataset's ``eos`` mode, which
uses ``np.compat`` (gone in numpy 2). This mixin supplies the three pieces; the
interactive loop, batching (``--buffer-size``, ``--batch-size``), ``--input`` and the
``S/H/D/P`` output are fairseq's own.

One bad input line must not end the loop, which would drop every line after it: a line
that is not UTF-8 is read with U+FFFD for its bad bytes, and a line longer than the
model's positions is cut to them, each with a warning naming the line (counted from 1
over the whole input, as fairseq's ``S-<line - 1>``).
"""
import logging
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from fairseq import utils
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

    _lines_read = 0  # input lines encoded so far
    _max_positions: Optional[int] = None  # the models' limit, once build_generator has seen them

    def build_generator(self, models, args, **unused) -> FillMaskGenerator:
        """The generator, and the start of an interactive run: its input is numbered from
        here and cut to what the models take; stdin keeps bytes that are not UTF-8 (as
        surrogates), where a strict locale would end fairseq's reading loop on them."""
        self._lines_read = 0
        self._max_positions = utils.resolve_max_positions(self.max_positions(), *[m.max_positions() for m in models])
        if hasattr(sys.stdin, "reconfigure"):
            sys.stdin.reconfigure(errors="surrogateescape")
        return FillMaskGenerator(self.dictionary, self.mask_idx, nbest=args.nbest)

    def get_interactive_tokens_and_lengths(
        self, lines: Sequence[str], encode_fn: Callable[[str], str]
    ) -> Tuple[List[torch.Tensor], List[int]]:
        """Encode each line span by span around its masks, as the HF tokenizer does."""
        tokens = []
        for line in lines:
            self._lines_read += 1
            line = self._readable(line)
            if MASK not in line:
                logger.warning("no %s in input line %r: nothing to fill", MASK, line)
            tokens.append(self._within_positions(encode_masked(line, encode_fn, self.dictionary)))
        return tokens, [t.numel() for t in tokens]

    def _readable(self, line: str) -> str:
        """``line`` with U+FFFD for the bytes that were not UTF-8 (read as surrogates),
        which SentencePiece cannot take."""
        try:
            line.encode("utf-8")
            return line
        except UnicodeEncodeError as e:
            logger.warning("input line %d is not UTF-8 (byte %d, 0x%02x): read with U+FFFD for its invalid bytes",
                           self._lines_read, len(line[:e.start].encode("utf-8")), ord(line[e.start]) & 0xFF)
            return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

    def _within_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (ending in ``</s>``, without ``<s>``) cut to fit the model's positions
        with the ``<s>`` before them, keeping the ``</s>``: fairseq would otherwise stop the
        whole run on this line with an error."""
        positions = utils.resolve_max_positions(self._max_positions, self.max_positions())
        if tokens.numel() + 1 <= positions:
            return tokens
        kept = torch.cat([tokens[: positions - 2], tokens[-1:]])
        lost = int(tokens[positions - 2:].eq(self.mask_idx).sum())
        logger.warning("input line %d takes %d positions, more than the model's %d: only its first %d pieces are read%s",
                       self._lines_read, tokens.numel() + 1, positions, positions - 2,
                       f", dropping {lost} {MASK}" if lost else "")
        return kept

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
