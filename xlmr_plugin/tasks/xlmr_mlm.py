"""Task ``xlmr_mlm``: multilingual masked LM over the layout written by ``xlmr-prepare``.

Replaces fairseq's ``multilingual_masked_lm``, which logs an empty dict where the
sampling table belongs, never runs its per-language validation, crashes on
``--mask-whole-words`` without ``--bpe``, keeps a stale shuffle across epochs with one
data path, and takes any subdirectory for a language.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from fairseq.data import (
    ConcatDataset,
    FairseqDataset,
    MaskTokensDataset,
    PrependTokenDataset,
    RawLabelDataset,
    data_utils,
)
from fairseq import utils
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
from xlmr_plugin.data.mapped_block_dataset import MappedBlockDataset
from xlmr_plugin.data.size_sorted_dataset import SizeSortedDataset
from xlmr_plugin.data.token_target_dataset import token_target_dataset
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.tasks.downstream_probe_validation import DownstreamProbeValidation, parse_probes
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.token_shards import language_shards
from xlmr_plugin.tasks.fill_mask_inference import FillMaskInference

logger = logging.getLogger(__name__)

# losses that read the masked targets of this task's samples; the first is the recipe's
MASKED_LM_CRITERIA = (RECIPES["base"].criterion, "masked_lm")


@dataclass
class XLMRMLMConfig(MaskedLMConfig):
    data: str = field(
        default="",
        metadata={"help": "output folder of xlmr-prepare: dict.txt and <lang>/{train,valid}.{bin,idx}, the train "
                          "split in shards train, train1, ...; several folders joined by ':' add their shards "
                          "in order (dict.txt from the first)"},
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
        self.paths = utils.split_paths(cfg.data)
        # every shard is checked now (a missing, truncated or other vocabulary's shard stops the run
        # before its first step)
        vocabulary = layout.vocabulary_sha256(self.paths[0]) if self._has_spm_model() else None
        shards = {lang: [s for path in self.paths for s in language_shards(path, lang, vocabulary)]
                  for lang in self.langs}
        self.train_shards = {lang: [prefix for prefix, _ in found] for lang, found in shards.items()}
        self.train_tokens = {lang: sum(tokens for _, tokens in found) for lang, found in shards.items()}
        # per (split, language): the shard in use and its masked blocks
        self._lang_cache: Dict[Tuple[str, str], Tuple[int, Optional[FairseqDataset]]] = {}

    def _has_spm_model(self) -> bool:
        """The vocabulary's digest needs both files; data made elsewhere may lack spm.model."""
        return (Path(self.paths[0]) / layout.SPM_MODEL).is_file()

    def has_sharded_data(self, split: str) -> bool:
        """True makes train.py call load_dataset every epoch, where languages are redrawn
        and each language moves on to its next shard (a language of one shard keeps it).

        The shards, the drawn blocks, the shuffle and the length order of an epoch then
        all follow from (seed, epoch), so a resumed run sees what an uninterrupted one would.
        """
        return split == self.cfg.train_subset

    def build_model(self, cfg, from_checkpoint: bool = False):
        """The model, once its positions can hold a block: fairseq would otherwise drop
        every block as too long and stop with "The dataset is empty"."""
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.tokens_per_sample > model.max_positions():
            raise ValueError(f"--tokens-per-sample {self.cfg.tokens_per_sample} is more than the model's "
                             f"{model.max_positions()} positions: lower it, or raise --max-positions")
        return model

    def build_criterion(self, cfg, from_checkpoint: bool = False):
        """Refuse a loss that cannot read masked-LM samples: fairseq's default
        ``cross_entropy`` trains on every position's target, pads included, and reports a
        plausible loss about a seventh of the true one."""
        name = getattr(cfg, "_name", None) or getattr(cfg, "criterion", None)
        if name not in MASKED_LM_CRITERIA:
            raise ValueError(f"--task xlmr_mlm trains with --criterion {MASKED_LM_CRITERIA[0]} "
                             f"(or {', '.join(MASKED_LM_CRITERIA[1:])}), not {name!r}")
        return super().build_criterion(cfg, from_checkpoint)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        langs, parts, tokens, shards = [], [], [], []
        for lang in self.langs:
            shard = (epoch - 1) % len(self.train_shards[lang]) if split == self.cfg.train_subset else 0
            part = self._language_dataset(split, lang, shard)
            if part is None:
                continue
            langs.append(lang)
            parts.append(part)
            tokens.append(self.train_tokens[lang])
            shards.append(shard)
        if not parts:
            raise FileNotFoundError(f"no language of {self.langs} has a '{split}' split in {self.cfg.data}")

        if split == self.cfg.train_subset:
            q = smoothed_probabilities(tokens, self.cfg.multilang_sampling_alpha)
            blocks = [len(p) for p in parts]
            drawn = blocks_per_language(q, blocks)
            log_sampling_table(langs, tokens, q, blocks, drawn, self.cfg.multilang_sampling_alpha,
                               [f"{k + 1}/{len(self.train_shards[lang])}" for lang, k in zip(langs, shards)])
            parts = [
                LanguageResamplingDataset(part, size, self.cfg.seed, self.langs.index(lang), epoch)
                for lang, part, size in zip(langs, parts, drawn)
            ]
        dataset = ConcatDataset(parts)
        with data_utils.numpy_seed(self.cfg.seed, epoch):
            shuffle = np.random.permutation(len(dataset)).astype(np.int32 if len(dataset) < 2**31 else np.int64)
        self.datasets[split] = SizeSortedDataset(dataset, shuffle)
        logger.info("%s: %d blocks from %d languages (epoch %d)", split, len(dataset), len(parts), epoch)

    def _language_dataset(self, split: str, lang: str, shard: int) -> Optional[FairseqDataset]:
        """Masked blocks of one shard of a language's split with its language id; the
        language's current shard is kept across epochs, the others are let go."""
        key = (split, lang)
        if key in self._lang_cache and self._lang_cache[key][0] == shard:
            return self._lang_cache[key][1]
        if split == self.cfg.train_subset:
            prefix = self.train_shards[lang][shard]
        else:
            prefixes = [layout.split_prefix(path, lang, split) for path in self.paths]
            prefix = next((p for p in prefixes if Path(f"{p}.idx").exists()), None)
            if prefix is None:
                logger.warning("language %s has no %s split in %s: left out of it", lang, split, self.cfg.data)
                self._lang_cache[key] = (shard, None)
                return None
        blocks = MappedBlockDataset(prefix, self.cfg.tokens_per_sample, self.cfg.sample_break_mode)
        if len(blocks) == 0 and split == self.cfg.train_subset:
            raise FileNotFoundError(f"language {lang}: no training data in {prefix}")
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
            extra={"lang_id": RawLabelDataset(np.full(len(src), self.langs.index(lang), dtype=np.int32))},
        )
        logger.info("%s: %d blocks", prefix, len(dataset))
        self._lang_cache[key] = (shard, dataset)
        return dataset


def resolve_languages(data: str, langs: str) -> List[str]:
    """The ``--langs`` list, or every subdirectory of the data paths with a train split, sorted."""
    found = sorted({lang for path in utils.split_paths(data) for lang in layout.languages(path, "train")})
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
    if not cfg.data or not (Path(utils.split_paths(cfg.data)[0]) / layout.DICT).is_file():
        raise FileNotFoundError(f"data: {cfg.data!r} has no {layout.DICT} (run xlmr-prepare first)")
    if cfg.tokens_per_sample < 8:
        raise ValueError(f"--tokens-per-sample must be at least 8, got {cfg.tokens_per_sample}")
    if cfg.multilang_sampling_alpha < 0:
        raise ValueError(f"--multilang-sampling-alpha must be >= 0, got {cfg.multilang_sampling_alpha}")
    parse_probes(cfg.downstream_probe)
    if cfg.d2v2_multi or cfg.include_target_tokens or cfg.shorten_method != "none":
        raise ValueError("xlmr_mlm does not support --d2v2-multi, --include-target-tokens or --shorten-method")
