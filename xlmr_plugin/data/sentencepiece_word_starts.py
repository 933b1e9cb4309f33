"""Word starts of a SentencePiece vocabulary, for ``--mask-whole-words`` without ``--bpe``."""
import torch
from fairseq.data import Dictionary

SPM_WORD_START = "\u2581"


def sentencepiece_word_starts(dictionary: Dictionary) -> torch.Tensor:
    """ByteTensor over the dictionary: 1 where a symbol begins a word.

    Pieces beginning with '▁' start a word, as fairseq's sentencepiece BPE decides;
    special symbols, ``<mask>`` and fairseq's ``madeupword`` fillers count as starts so
    they are never glued to a neighbouring word.
    """
    starts = [
        i < dictionary.nspecial
        or symbol.startswith(SPM_WORD_START)
        or symbol.startswith("madeupword")
        or (symbol.startswith("<") and symbol.endswith(">"))
        for i, symbol in enumerate(dictionary.symbols)
    ]
    return torch.tensor(starts, dtype=torch.uint8)
