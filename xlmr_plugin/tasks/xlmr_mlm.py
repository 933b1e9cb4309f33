"""Task ``xlmr_mlm``: multilingual masked LM over the layout written by ``xlmr-prepare``.

Replaces fairseq's ``multilingual_masked_lm``, which logs an empty dict where the
sampling table belongs, never runs its per-language validation, crashes on
``--mask-whole-words`` without ``--bpe``, keeps a stale shuffle across epochs with one
data path, and takes any subdirectory for a language.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks.language_modeling import SAMPLE_BREAK_MODE_CHOICES
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import II

from xlmr_plugin.data.language_resampling_dataset import LanguageResamplingDataset
from xlmr_plugin.data.language_sampling import SAMPLING_CHOICES, LanguageSampling
from xlmr_plugin.data.sentencepiece_word_starts import sentencepiece_word_starts
from xlmr_plugin.data.update_schedule import UpdateSchedule
from xlmr_plugin.data.mapped_block_dataset import MappedBlockDataset
from xlmr_plugin.data.packed_block_dataset import PackedBlockDataset, SegmentIdsDataset
from xlmr_plugin.models.xlmr_roberta import require_segment_attention
from xlmr_plugin.data.size_sorted_dataset import SizeSortedDataset
from xlmr_plugin.data.token_target_dataset import token_target_dataset
from xlmr_plugin.recipes import RECIPES
from xlmr_plugin.tasks.downstream_probe_validation import DownstreamProbeValidation, parse_probes
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.token_shards import language_shards
from xlmr_plugin.tasks.fill_mask_inference import FillMaskInference

logger = logging.getLogger(__name__)

# the task state fairseq saves in checkpoints: the epoch whose data was loaded last, and its start update
DATA_EPOCH, DATA_UPDATE = "data_epoch", "data_start_update"
# losses that read the masked targets of this task's samples; the first is the recipe's
MASKED_LM_CRITERIA = (RECIPES["base"].criterion, "masked_lm")
# fairseq's break modes and ours
BREAK_MODES = ChoiceEnum([*(mode.value for mode in SAMPLE_BREAK_MODE_CHOICES), layout.PACKED])


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
    sample_break_mode: BREAK_MODES = field(
        default="complete",
        metadata={"help": "none: fill blocks across lines; complete: whole lines per block (longer "
                          "lines are split); complete_doc: also never cross a document; eos: one line per block; "
                          "packed: pieces of documents packed into full blocks, each piece with its own <s>, "
                          "positions and attention (needs --attention-impl sdpa)"},
    )
    tokens_per_sample: int = field(
        default=512, metadata={"help": "tokens per block, including the <s> prepended to each block"}
    )
    # Any: a number, or a schedule's text (data/update_schedule.py)
    multilang_sampling_alpha: Any = field(
        default=RECIPES["base"].multilang_sampling_alpha,
        metadata={"help": "language sampling exponent: q_i ∝ p_i^alpha with p_i the language's share "
                          "of tokens; 1 samples as the data, 0 uniformly; or a schedule over updates, "
                          "piecewise-linear '0:0.7,100000:0.5,200000:0.3' or stepped 'step:0:0.7,100000:0.5', "
                          "read when an epoch starts"},
    )
    language_sampling: SAMPLING_CHOICES = field(
        default="alpha",
        metadata={"help": "alpha: q ∝ p^alpha (XLM-R); unimax: the token budget spread uniformly over the "
                          "languages, each at most --unimax-max-epochs passes over its data (Chung et al. 2023)"},
    )
    unimax_max_epochs: float = field(
        default=1.0, metadata={"help": "unimax: the most passes over any language's tokens in the budget"}
    )
    unimax_budget_tokens: int = field(
        default=0,
        metadata={"help": "unimax: the run's token budget; 0: max-update x update-freq x world size x "
                          "(batch-size x tokens-per-sample, or max-tokens)"},
    )
    language_joins: str = field(
        default="",
        metadata={"help": "LANG:UPDATE[,LANG:UPDATE]: each language is sampled (q > 0) only from the epoch "
                          "that starts at or after its update; the others from the start"},
    )
    epoch_blocks: int = field(
        default=0,
        metadata={"help": "blocks drawn per epoch (0: as many as the epoch's shards hold); fewer makes "
                          "epochs, and so the data schedules, which change only at epoch starts, finer"},
    )
    mask_prob: Any = field(
        default=RECIPES["base"].mask_prob,
        metadata={"help": "share of tokens masked (80%% <mask>, 10%% random, 10%% kept), or a schedule over "
                          "updates as --multilang-sampling-alpha; the valid splits mask at the schedule's last rate"},
    )
    downstream_probe: str = field(
        default="",
        metadata={"help": "NAME:DIR[,NAME:DIR]: at every validation, a probe on frozen features logs "
                          "downstream_NAME, for --best-checkpoint-metric downstream_NAME "
                          "--maximize-best-checkpoint-metric. DIR from xlmr-probe-data: a sentence_prediction "
                          "layout (--kind xnli) logs a linear probe's accuracy (%%); a cross-lingual set (--kind "
                          "gettext) the mean translation retrieval (%%), downstream_NAME_transfer the zero-shot "
                          "transfer (%%), and both with _floor, an untrained model's"},
    )
    train_subset: str = II("dataset.train_subset")
    # what a run consumes, for unimax's default budget
    max_update: int = II("optimization.max_update")
    update_freq: List[int] = II("optimization.update_freq")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    batch_size: Optional[int] = II("dataset.batch_size")
    max_tokens: Optional[int] = II("dataset.max_tokens")


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
        # per (split, language): the shard in use, its masked blocks and their mask rate
        self._lang_cache: Dict[Tuple[str, str], Tuple[int, Optional[FairseqDataset], float]] = {}
        self.sampling = LanguageSampling(cfg, self.langs) if self.langs else None
        self.mask_rate = mask_rate_schedule(cfg.mask_prob)
        self._logged_mask_rate: Optional[float] = None

    def begin_epoch_data(self, epoch: int, num_updates: int) -> None:
        """The trainer's update count as it loads ``epoch``'s data (patches/epoch_start_update.py).

        The data schedules are read at the update an epoch starts at, so that the epoch's data is
        a function of (seed, epoch, that update). It is kept in the task state fairseq saves in
        every checkpoint: a run resumed inside the epoch rebuilds it from the same update.
        """
        if self.state.state_dict.get(DATA_EPOCH) != epoch:
            self.state.merge_state_dict({DATA_EPOCH: epoch, DATA_UPDATE: num_updates})

    def epoch_start_update(self, epoch: int) -> int:
        """The update ``epoch`` started at; 0 for an epoch loaded outside fairseq's trainer."""
        saved = self.state.state_dict
        return saved[DATA_UPDATE] if saved.get(DATA_EPOCH) == epoch else 0

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
        if self.cfg.sample_break_mode == layout.PACKED:
            require_segment_attention(model)
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
        # the valid splits mask at the rate the schedule ends on, so that a run's validation
        # losses are comparable with each other and with a constant-rate run's
        update = self.epoch_start_update(epoch) if split == self.cfg.train_subset else self.mask_rate.updates[-1]
        mask_prob = self.mask_rate(update)
        if split == self.cfg.train_subset and mask_prob != self._logged_mask_rate:
            logger.info("mask rate %g, from update %d (epoch %d)", mask_prob, update, epoch)
            self._logged_mask_rate = mask_prob
        langs, parts, tokens, shards = [], [], [], []
        for lang in self.langs:
            shard = (epoch - 1) % len(self.train_shards[lang]) if split == self.cfg.train_subset else 0
            part = self._language_dataset(split, lang, shard, mask_prob)
            if part is None:
                continue
            langs.append(lang)
            parts.append(part)
            tokens.append(self.train_tokens[lang])
            shards.append(shard)
        if not parts:
            raise FileNotFoundError(f"no language of {self.langs} has a '{split}' split in {self.cfg.data}")

        if split == self.cfg.train_subset:
            drawn = self.sampling.draw(
                langs, tokens, [len(p) for p in parts],
                [f"{k + 1}/{len(self.train_shards[lang])}" for lang, k in zip(langs, shards)],
                update, epoch, self.cfg.epoch_blocks)
            parts = [  # a language not joined yet draws nothing
                LanguageResamplingDataset(part, size, self.cfg.seed, self.langs.index(lang), epoch)
                for lang, part, size in zip(langs, parts, drawn) if size > 0
            ]
        dataset = ConcatDataset(parts)
        with data_utils.numpy_seed(self.cfg.seed, epoch):
            shuffle = np.random.permutation(len(dataset)).astype(np.int32 if len(dataset) < 2**31 else np.int64)
        self.datasets[split] = SizeSortedDataset(dataset, shuffle)
        logger.info("%s: %d blocks from %d languages (epoch %d)", split, len(dataset), len(parts), epoch)

    def _language_dataset(self, split: str, lang: str, shard: int, mask_prob: float) -> Optional[FairseqDataset]:
        """Masked blocks of one shard of a language's split with its language id; the
        language's current shard is kept across epochs (while the mask rate holds), the others are let go."""
        key = (split, lang)
        if key in self._lang_cache and self._lang_cache[key][0::2] == (shard, mask_prob):
            return self._lang_cache[key][1]
        if split == self.cfg.train_subset:
            prefix = self.train_shards[lang][shard]
        else:
            prefixes = [layout.split_prefix(path, lang, split) for path in self.paths]
            prefix = next((p for p in prefixes if Path(f"{p}.idx").exists()), None)
            if prefix is None:
                logger.warning("language %s has no %s split in %s: left out of it", lang, split, self.cfg.data)
                self._lang_cache[key] = (shard, None, mask_prob)
                return None
        packed = self.cfg.sample_break_mode == layout.PACKED
        if packed:  # an <s> before each piece of a block
            blocks = PackedBlockDataset(prefix, self.cfg.tokens_per_sample, self.dictionary.bos())
        else:
            blocks = MappedBlockDataset(prefix, self.cfg.tokens_per_sample, self.cfg.sample_break_mode)
        if len(blocks) == 0 and split == self.cfg.train_subset:
            raise FileNotFoundError(f"language {lang}: no training data in {prefix}")
        if not packed:
            blocks = PrependTokenDataset(blocks, self.dictionary.bos())
        src, tgt = MaskTokensDataset.apply_mask(
            blocks, self.dictionary, pad_idx=self.dictionary.pad(), mask_idx=self.mask_idx,
            seed=self.cfg.seed, mask_prob=mask_prob,
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
            segment_ids=SegmentIdsDataset(blocks) if packed else None,
        )
        logger.info("%s: %d blocks", prefix, len(dataset))
        self._lang_cache[key] = (shard, dataset, mask_prob)
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


def mask_rate_schedule(spec: Any) -> UpdateSchedule:
    """``--mask-prob`` as a schedule of rates in (0, 1): at 0 no token would be a target."""
    schedule = UpdateSchedule.parse(spec, "--mask-prob", low=0.0, high=1.0)
    if not all(0 < rate < 1 for rate in schedule.values):
        raise ValueError(f"--mask-prob: every rate must lie in (0, 1), got {spec!r}")
    return schedule


def _validate(cfg: XLMRMLMConfig) -> None:
    """Fail at startup, naming the field, rather than deep inside data loading."""
    if not cfg.data or not (Path(utils.split_paths(cfg.data)[0]) / layout.DICT).is_file():
        raise FileNotFoundError(f"data: {cfg.data!r} has no {layout.DICT} (run xlmr-prepare first)")
    if cfg.tokens_per_sample < 8:
        raise ValueError(f"--tokens-per-sample must be at least 8, got {cfg.tokens_per_sample}")
    mask_rate_schedule(cfg.mask_prob)
    parse_probes(cfg.downstream_probe)
    if cfg.d2v2_multi or cfg.include_target_tokens or cfg.shorten_method != "none":
        raise ValueError("xlmr_mlm does not support --d2v2-multi, --include-target-tokens or --shorten-method")
