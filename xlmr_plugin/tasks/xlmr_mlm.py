"""Task ``xlmr_mlm``: multilingual masked LM over the layout written by ``xlmr-prepare``.

Replaces fairseq's ``multilingual_masked_lm``, which logs an empty dict where the
sampling table belongs, never runs its per-language validation, crashes on
``--mask-whole-words`` without ``--bpe``, keeps a stale shuffle across epochs with one
data path, and takes any subdirectory for a language.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from fairseq.data import (
    ConcatDataset,
    FairseqDataset,
    MaskTokensDataset,
    PrependTokenDataset,
    RawLabelDataset,
    SortDataset,
    TokenBlockDataset,
    data_utils,
)
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import SAMPLE_BREAK_MODE_CHOICES
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import II

from xlmr_plugin.data.language_resampling_dataset import (
    LanguageResamplingDataset,
    blocks_per_language,
    log_sampling_table,
    smoothed_probabilities,
)
from xlmr_plugin.data.sentencepiece_word_starts import sentencepiece_word_starts
from xlmr_plugin.data.split_long_lines_dataset import SplitLongLinesDataset
from xlmr_plugin.data.token_target_dataset import token_target_dataset
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.tasks.downstream_probe_validation import DownstreamProbeValidation, parse_probes
from xlmr_plugin.storage import layout
from xlmr_plugin.tasks.fill_mask_inference import FillMaskInference

logger = logging.getLogger(__name__)


@dataclass
class XLMRMLMConfig(MaskedLMConfig):
    data: str = field(
        default="",
        metadata={"help": "output folder of xlmr-prepare: dict.txt and <lang>/{train,valid}.{bin,idx}"},
    )
    langs: str = field(
        default="",
        metadata={"help": "comma-separated languages to train on; default: every subdirectory "
                          "of DATA holding a train split, sorted"},
    )
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(
        default="complete",
        metadata={"help": "none: fill blocks across lines; complete: whole lines per block (longer "
                          "lines are split); complete_doc: also never cross a document; eos: one line per block"},
    )
    tokens_per_sample: int = field(
        default=512, metadata={"help": "tokens per block, including the <s> prepended to each block"}
    )
    multilang_sampling_alpha: float = field(
        default=RECIPES["base"].multilang_sampling_alpha,
        metadata={"help": "language sampling exponent: q_i ∝ p_i^alpha with p_i the language's share "
                          "of tokens; 1 samples as the data, 0 uniformly"},
    )
    downstream_probe: str = field(
        default="",
        metadata={"help": "NAME:DIR[,NAME:DIR]: at every validation, a linear probe on frozen features of "
                          "a sentence_prediction-layout DIR (train and valid splits, e.g. from xlmr-probe-data) "
                          "logs downstream_NAME (accuracy, %%), for --best-checkpoint-metric downstream_NAME "
                          "--maximize-best-checkpoint-metric"},
    )
    train_subset: str = II("dataset.train_subset")


@register_task("xlmr_mlm", dataclass=XLMRMLMConfig)
class XLMRMLMTask(DownstreamProbeValidation, FillMaskInference, MaskedLMTask):
    """XLM-R pretraining: one masked-LM stream over many languages, no language ids."""

    cfg: XLMRMLMConfig

    def __init__(self, cfg: XLMRMLMConfig, dictionary=None):
        _validate(cfg)
        super().__init__(cfg, dictionary)
        self.langs = resolve_languages(cfg.data, cfg.langs)
        logger.info("%d languages: %s", len(self.langs), ",".join(self.langs))
        self._word_starts = (
            sentencepiece_word_starts(self.dictionary) if cfg.mask_whole_words else None
        )
        # per (split, language): masked blocks and the language's token count; epoch-independent
        self._lang_cache: Dict[Tuple[str, str], Tuple[FairseqDataset, int]] = {}

    def has_sharded_data(self, split: str) -> bool:
        """True makes train.py call load_dataset every epoch, where languages are redrawn.

        The drawn blocks, the shuffle and the length order of an epoch then all follow
        from (seed, epoch), so a resumed run sees what an uninterrupted one would.
        """
        return split == self.cfg.train_subset

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        langs, parts, tokens = [], [], []
        for lang in self.langs:
            part, ntokens = self._language_dataset(split, lang)
            if part is None:
                continue
            langs.append(lang)
            parts.append(part)
            tokens.append(ntokens)
        if not parts:
            raise FileNotFoundError(f"no language of {self.langs} has a '{split}' split in {self.cfg.data}")

        if split == self.cfg.train_subset:
            q = smoothed_probabilities(tokens, self.cfg.multilang_sampling_alpha)
            blocks = [len(p) for p in parts]
            drawn = blocks_per_language(q, blocks)
            if epoch == 1 or not self.datasets.get(split):
                log_sampling_table(langs, tokens, q, blocks, drawn, self.cfg.multilang_sampling_alpha)
            parts = [
                LanguageResamplingDataset(part, size, self.cfg.seed, self.langs.index(lang), epoch)
                for lang, part, size in zip(langs, parts, drawn)
            ]
        dataset = ConcatDataset(parts)
        with data_utils.numpy_seed(self.cfg.seed, epoch):
            shuffle = np.random.permutation(len(dataset))
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, dataset.sizes])
        logger.info("%s: %d blocks from %d languages (epoch %d)", split, len(dataset), len(parts), epoch)

    def _language_dataset(self, split: str, lang: str) -> Tuple[FairseqDataset, int]:
        """Masked blocks of one language's split with its language id, cached across epochs."""
        key = (split, lang)
        if key in self._lang_cache:
            return self._lang_cache[key]
        path = str(layout.split_prefix(self.cfg.data, lang, split))
        raw = data_utils.load_indexed_dataset(path, self.dictionary)
        if raw is None or len(raw) == 0:
            if split == self.cfg.train_subset:
                raise FileNotFoundError(f"language {lang}: no training data at {path}")
            logger.warning("language %s has no %s split at %s: left out of it", lang, split, path)
            self._lang_cache[key] = (None, 0)
            return self._lang_cache[key]
        block_size = self.cfg.tokens_per_sample - 1  # one less for <s>
        lines = raw
        if self.cfg.sample_break_mode != "none":
            lines = SplitLongLinesDataset.wrap_if_needed(raw, block_size)
        if self.cfg.sample_break_mode == "eos":
            # one (split) line per block: the lines are the blocks. fairseq's
            # TokenBlockDataset would compute the same, but its eos path uses
            # np.compat, which numpy 2 removed
            blocks = lines
        else:
            blocks = TokenBlockDataset(
                lines, lines.sizes, block_size, pad=self.dictionary.pad(),
                eos=self.dictionary.eos(), break_mode=self.cfg.sample_break_mode,
            )
        blocks = PrependTokenDataset(blocks, self.dictionary.bos())
        src, tgt = MaskTokensDataset.apply_mask(
            blocks, self.dictionary, pad_idx=self.dictionary.pad(), mask_idx=self.mask_idx,
            seed=self.cfg.seed, mask_prob=self.cfg.mask_prob,
            leave_unmasked_prob=self.cfg.leave_unmasked_prob,
            random_token_prob=self.cfg.random_token_prob,
            freq_weighted_replacement=self.cfg.freq_weighted_replacement,
            mask_whole_words=self._word_starts,
            mask_multiple_length=self.cfg.mask_multiple_length, mask_stdev=self.cfg.mask_stdev,
        )
        dataset = token_target_dataset(
            src, self.dictionary.pad(), tgt, self.dictionary.pad(),
            # for per-language loss in the criterion; the model never sees it
            extra={"lang_id": RawLabelDataset([self.langs.index(lang)] * len(src))},
        )
        logger.info("%s/%s: %d lines, %d blocks", lang, split, len(raw), len(dataset))
        self._lang_cache[key] = (dataset, int(np.sum(raw.sizes)))
        return self._lang_cache[key]


def resolve_languages(data: str, langs: str) -> List[str]:
    """The ``--langs`` list, or every subdirectory of ``data`` with a train split, sorted."""
    found = layout.languages(data, "train")
    if not langs:
        if not found:  # a release directory (model.pt, dict.txt): enough to probe, not to train
            logger.warning("no language folder with train.{bin,idx} in %s: probing only", data)
        return found
    wanted = [lang.strip() for lang in langs.split(",") if lang.strip()]
    missing = [lang for lang in wanted if lang not in found]
    if missing:
        raise ValueError(
            f"--langs: no training data for {','.join(missing)} in {data}; "
            f"languages found: {','.join(found) or 'none'}"
        )
    return wanted


def _validate(cfg: XLMRMLMConfig) -> None:
    """Fail at startup, naming the field, rather than deep inside data loading."""
    if not cfg.data or not (Path(cfg.data) / layout.DICT).is_file():
        raise FileNotFoundError(f"data: {cfg.data!r} has no {layout.DICT} (run xlmr-prepare first)")
    if cfg.tokens_per_sample < 8:
        raise ValueError(f"--tokens-per-sample must be at least 8, got {cfg.tokens_per_sample}")
    if cfg.multilang_sampling_alpha < 0:
        raise ValueError(f"--multilang-sampling-alpha must be >= 0, got {cfg.multilang_sampling_alpha}")
    parse_probes(cfg.downstream_probe)
    if cfg.d2v2_multi or cfg.include_target_tokens or cfg.shorten_method != "none":
        raise ValueError("xlmr_mlm does not support --d2v2-multi, --include-target-tokens or --shorten-method")
