"""Criterion ``xlmr_masked_lm``: masked-LM cross entropy with per-language losses."""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from fairseq import modules, utils
from fairseq.criterions import register_criterion
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from fairseq.logging import metrics
from fairseq.utils import safe_getattr

from xlmr_plugin.modules.linear_cross_entropy import linear_cross_entropy
from xlmr_plugin.modules.lm_head import lm_head_features

LANG_LOSS = "lang_loss:"
LANG_SIZE = "lang_size:"


@dataclass
class XLMRMaskedLmConfig(MaskedLmConfig):
    fused_cross_entropy: bool = field(
        default=False,
        metadata={"help": "speed lever: the LM head's output projection and the cross entropy in one pass over "
                          "chunks of masked rows, never holding all N x V logits (same loss and gradients)"},
    )
    cross_entropy_chunk_rows: int = field(
        default=2048, metadata={"help": "masked rows per chunk of --fused-cross-entropy"}
    )
    no_train_language_metrics: bool = field(
        default=False,
        metadata={"help": "speed lever: no per-language loss in training steps (each costs host syncs); "
                          "validation still reports every language"},
    )


@register_criterion("xlmr_masked_lm", dataclass=XLMRMaskedLmConfig)
class XLMRMaskedLmLoss(MaskedLmLoss):
    """Cross entropy over masked positions only, as fairseq's ``masked_lm``.

    When a batch carries ``lang_id`` (the ``xlmr_mlm`` task adds it; the model never
    sees it), the loss is also summed per language, so validation reports ``loss_<lang>``
    and ``ppl_<lang>`` for every language plus their unweighted mean ``loss_lang_mean``
    / ``ppl_lang_mean``, each usable as ``--best-checkpoint-metric``.
    """

    def __init__(self, cfg: XLMRMaskedLmConfig, task):
        super().__init__(cfg, task)
        # safe_getattr: callers may pass a bare {"tpu": ...} config (the levers then stay off)
        self.fused_cross_entropy = safe_getattr(cfg, "fused_cross_entropy", False)
        self.chunk_rows = safe_getattr(cfg, "cross_entropy_chunk_rows", 2048)
        self.train_language_metrics = not safe_getattr(cfg, "no_train_language_metrics", False)

    def forward(self, model, sample: Dict[str, Any], reduce: bool = True) -> Tuple[torch.Tensor, int, Dict]:
        masked = sample["target"].ne(self.padding_idx)  # B x T
        sample_size = masked.int().sum()
        # the LM head runs on masked positions only (an empty batch of them when a small
        # batch draws no mask: loss 0, no host sync to check); TPUs want static shapes
        project = None if self.tpu else masked
        if self.fused_cross_entropy and project is not None:
            loss, token_loss = self._fused_loss(model, sample, masked)
        else:
            logits = model(**sample["net_input"], masked_tokens=project)[0]
            targets = model.get_targets(sample, [logits])
            if project is not None:
                targets = targets[project]
            token_loss = modules.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.view(-1),
                reduction="none", ignore_index=self.padding_idx,
            )  # N
            loss = token_loss.sum()
        logging_output = {
            "loss": loss if self.tpu else loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        langs = getattr(self.task, "langs", None)
        if "lang_id" in sample and langs and (self.train_language_metrics or not model.training):
            logging_output.update(self._per_language(sample, masked, project, token_loss, langs))
        return loss, sample_size, logging_output

    def _fused_loss(self, model, sample: Dict[str, Any], masked: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """RobertaLMHead's maths with its projection (tied weight + bias) fused into the
        cross entropy (modules/linear_cross_entropy.py)."""
        features = model(**sample["net_input"], features_only=True)[0]  # B x T x C
        head = model.encoder.lm_head
        x = lm_head_features(head, features[masked])  # N x C
        targets = model.get_targets(sample, None)[masked]  # N
        return linear_cross_entropy(
            x, head.weight, head.bias, targets, ignore_index=self.padding_idx,
            pad_multiple=getattr(head, "vocab_pad_multiple", 1), chunk_rows=self.chunk_rows,
        )

    @staticmethod
    def _per_language(sample: Dict[str, Any], masked: torch.Tensor, project: Optional[torch.Tensor],
                      token_loss: torch.Tensor, langs: List[str]) -> Dict[str, torch.Tensor]:
        """Loss sum and masked-token count per language; every language always present,
        so the logging outputs of all workers have the same keys and can be summed."""
        lang = sample["lang_id"].view(-1, 1).expand_as(masked)  # B x T
        lang = lang[project] if project is not None else lang.reshape(-1)
        counted = masked[project] if project is not None else masked.reshape(-1)
        n = len(langs)
        loss_sum = token_loss.new_zeros(n, dtype=torch.float32).index_add_(0, lang, token_loss.detach().float())
        size = counted.new_zeros(n, dtype=torch.long).index_add_(0, lang, counted.long())
        out = {}
        for i, name in enumerate(langs):
            out[LANG_LOSS + name] = loss_sum[i]
            out[LANG_SIZE + name] = size[i]
        return out

    @classmethod
    def reduce_metrics(cls, logging_outputs: List[Dict[str, Any]]) -> None:
        super().reduce_metrics(logging_outputs)
        langs = sorted({k[len(LANG_SIZE):] for log in logging_outputs for k in log if k.startswith(LANG_SIZE)})
        for lang in langs:
            size = utils.item(sum(log.get(LANG_SIZE + lang, 0) for log in logging_outputs))
            if size == 0:
                continue
            loss = utils.item(sum(log.get(LANG_LOSS + lang, 0) for log in logging_outputs))
            metrics.log_scalar(f"loss_{lang}", loss / size / math.log(2), size, round=3)
            metrics.log_derived(f"ppl_{lang}", _perplexity_of(f"loss_{lang}"))
        if langs:
            # every language of the run (all are keys of every logging output), not only those
            # of this batch: the derived meter is rebuilt at each call, the last one wins
            mean = _mean_loss(langs)
            metrics.log_derived("loss_lang_mean", lambda meters: _maybe(mean(meters), lambda x: round(x, 3)))
            metrics.log_derived("ppl_lang_mean", lambda meters: _maybe(mean(meters), utils.get_perplexity))


def _maybe(value: Optional[float], fn) -> Optional[float]:
    """A training log interval may hold no block of a language: its meter is then empty."""
    return None if value is None else fn(value)


def _perplexity_of(key: str):
    return lambda meters: _maybe(meters[key].avg, utils.get_perplexity)


def _mean_loss(langs: List[str]):
    """Unweighted mean over the languages with data, so each language counts once."""

    def mean(meters) -> Optional[float]:
        values = [meters[f"loss_{lang}"].avg for lang in langs if f"loss_{lang}" in meters]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    return mean
