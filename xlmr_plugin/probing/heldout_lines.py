"""Held-out lines per language, from xlmr-prepare's shards or from raw text.

What ``xlmr-eval-ppl`` and the masked-word accuracy read. Binarized: ``DATA/<lang>/
<split>.{bin,idx}`` (the empty items that mark document ends are dropped). Raw:
``DATA/<lang>.txt`` files in the CC-100 layout, or one ``<lang>.txt`` file; blank lines
are document breaks and are dropped. Lines come out as ids ending in ``</s>``, without
``<s>``; a line longer than the model takes is split into near-equal pieces, as in
training.
"""
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils
from fairseq.data.list_dataset import ListDataset

from xlmr_plugin.data.split_long_lines_dataset import SplitLongLinesDataset
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)


def available_languages(data: Path, split: str) -> List[str]:
    """Languages of ``data``: folders with ``split`` shards, else ``*.txt`` files, sorted."""
    if data.is_file():
        return [data.name.split(".")[0]]
    return layout.languages(data, split) or sorted(p.name[: -len(".txt")] for p in data.glob("*.txt"))


def heldout_lines(
    data: Path,
    lang: str,
    split: str,
    dictionary: Dictionary,
    encode: Callable[[str], torch.Tensor],
    max_len: int,
    max_lines: Optional[int] = None,
) -> FairseqDataset:
    """The first ``max_lines`` non-empty lines of ``lang``, each at most ``max_len`` ids.

    ``encode`` turns raw text into ids ending in ``</s>`` (``XLMR.encode_line``).
    """
    shard = layout.split_prefix(data, lang, split)
    if data.is_dir() and shard.with_suffix(".idx").is_file():
        items = data_utils.load_indexed_dataset(str(shard), dictionary)
        lines = [items[i] for i in range(len(items)) if items.sizes[i] > 1]
    else:
        path = data if data.is_file() else data / f"{lang}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"language {lang}: neither {shard}.idx nor {path}")
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
        lines = [encode(text) for text in texts[:max_lines]]
    lines = [line.long() for line in lines[:max_lines]]
    if not lines:
        raise ValueError(f"language {lang}: no non-empty line in {data} ({split})")
    logger.info("%s: %d lines, %d tokens", lang, len(lines), sum(len(line) for line in lines))
    return SplitLongLinesDataset.wrap_if_needed(ListDataset(lines, [len(line) for line in lines]), max_len)


def check_same_dictionary(data: Path, dictionary: Dictionary) -> None:
    """The shards of ``data`` hold ids of its dict.txt: read with another dictionary (a model
    trained on another vocabulary), every loss would be computed on other pieces, silently."""
    theirs = Dictionary.load(str(data / layout.DICT))
    if theirs.symbols != dictionary.symbols[: len(theirs)] or len(dictionary) - len(theirs) > 1:
        raise ValueError(f"{data / layout.DICT} is not the model's dictionary ({len(theirs)} against "
                         f"{len(dictionary)} symbols, <mask> included): evaluate on data made with the "
                         "model's vocabulary, or pass the model's with --dict-dir")


def load_heldout(
    data: Path, langs: Optional[List[str]], split: str, dictionary: Dictionary,
    encode: Callable[[str], torch.Tensor], max_len: int, max_lines: Optional[int] = None,
) -> Dict[str, FairseqDataset]:
    """:func:`heldout_lines` of each language in ``langs`` (default: all found in ``data``)."""
    langs = langs or available_languages(data, split)
    if not langs:
        raise FileNotFoundError(f"{data}: no <lang>/{split}.idx shards and no <lang>.txt files")
    if (Path(data) / layout.DICT).is_file():
        check_same_dictionary(Path(data), dictionary)
    return {lang: heldout_lines(data, lang, split, dictionary, encode, max_len, max_lines) for lang in langs}
