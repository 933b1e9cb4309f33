"""Criterion ``xlmr_squad``: the mean of the start and end cross entropies, as BERT's
and XLM-R's SQuAD fine-tuning (``(start_loss + end_loss) / 2``)."""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II


@dataclass
class XLMRSquadCriterionConfig(FairseqDataclass):
    head_name: str = II("task.head_name")


@register_criterion("xlmr_squad", dataclass=XLMRSquadCriterionConfig)
class XLMRSquadCriterion(FairseqCriterion):
    """Start and end positions as classes over a window's tokens (padding excluded)."""

    def __init__(self, task, head_name: str):
        super().__init__(task)
        self.head_name = head_name

    def forward(self, model, sample: Dict[str, Any], reduce: bool = True) -> Tuple[torch.Tensor, int, Dict]:
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head_name)
        padding = sample["net_input"]["src_tokens"].eq(self.padding_idx)  # B x T
        logits = logits.float().masked_fill(padding.unsqueeze(-1), float("-inf"))  # B x T x 2
        target = sample["target"]  # B x 2
        start_loss = F.cross_entropy(logits[..., 0], target[:, 0], reduction="sum")
        end_loss = F.cross_entropy(logits[..., 1], target[:, 1], reduction="sum")
        loss = (start_loss + end_loss) / 2
        both = logits.argmax(dim=1).eq(target).all(dim=-1)  # B: start and end right
        sample_size = target.size(0)
        return loss, sample_size, {
            "loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample_size,
            "sample_size": sample_size, "ncorrect": both.sum().data,
        }

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict[str, Any]]) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ncorrect = sum(log.get("ncorrect", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("span_accuracy", 100.0 * ncorrect / max(sample_size, 1), sample_size, round=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
