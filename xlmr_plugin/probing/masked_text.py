"""Text with ``<mask>`` to token ids and back, as the Hugging Face XLM-R tokenizer does.

SentencePiece would cut ``<mask>`` into pieces (``▁<``, ``mask``, ``>``), so the text
between masks is encoded span by span and the mask id spliced in between. Which
spaces survive follows ``XLMRobertaTokenizer`` (transformers 5), whose ``<mask>`` is an
added token with ``lstrip=True``: the space before a mask is dropped, and the text
after it is a span of its own, so it always begins with SentencePiece's word-start
``▁`` ("a <mask>b" and "a <mask> b" encode alike). Both the Python API and
``fairseq-interactive`` encode through here, so they and the exported HF tokenizer
give the model the same ids.

Filling goes the other way without a round trip through SentencePiece, which would
normalise the user's text: each filler is placed where its mask was, with a space
before it only if its piece starts a word, and the text after the mask is kept as
written. fairseq's ``fill_mask`` instead pastes the decoded piece with a blind
leading space (fairseq#1306), which breaks at the start of a line and for pieces that
continue a word.
"""
from typing import Callable, List, Sequence

import torch
from fairseq.data import Dictionary

MASK = "<mask>"
WORD_START = "\u2581"


def mask_spans(text: str) -> List[str]:
    """The text between masks, each span before a mask stripped on the right."""
    spans = text.split(MASK)
    return [span.rstrip() for span in spans[:-1]] + [spans[-1]]


def encode_masked(text: str, encode_pieces: Callable[[str], str], dictionary: Dictionary) -> torch.LongTensor:
    """Ids of ``text`` ending in ``</s>``, without ``<s>``; ``<mask>`` becomes the mask id.

    ``encode_pieces`` is fairseq's SentencePiece BPE ``encode`` (text to space-joined
    pieces); a piece missing from ``dictionary`` becomes ``<unk>``, as SentencePiece's
    own unknown id 0 maps to fairseq's 3 in XLM-R's dictionary layout.
    """
    pieces = f" {MASK} ".join(encode_pieces(span) for span in mask_spans(text))
    return dictionary.encode_line(pieces, append_eos=True, add_if_not_exist=False).long()


def filler_surface(piece: str) -> str:
    """The text a filler piece stands for, without the space its ``▁`` marks."""
    return piece.replace(WORD_START, " ").lstrip(" ")


def fill_text(text: str, fillers: Sequence[str]) -> str:
    """``text`` with its i-th ``<mask>`` replaced by the piece ``fillers[i]``.

    A word-start piece gets one space before it unless it opens the line; any other
    piece continues the word before the mask ("Haus<mask>" + "es" = "Hauses").
    """
    spans = mask_spans(text)
    if len(fillers) != len(spans) - 1:
        raise ValueError(f"{len(spans) - 1} masks in {text!r} but {len(fillers)} fillers")
    out = spans[0]
    for piece, after in zip(fillers, spans[1:]):
        space = " " if piece.startswith(WORD_START) and out else ""
        out += space + filler_surface(piece) + after
    return out
