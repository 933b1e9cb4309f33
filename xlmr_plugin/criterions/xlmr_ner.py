"""Criterion ``xlmr_ner``: cross entropy of the tag at each word's first piece.

Other pieces, ``<s>``, ``</s>`` and padding carry ``<pad>`` as target and count for
nothing; the loss is summed over words and normalised by their number (sample_size).
Training and validation log the word-level tag ``accuracy``; validation also counts
entities with conlleval's chunk rules on each item's gold and predicted tags, and
logs entity ``precision``, ``recall`` and ``f1`` (percent), so that
``--best-checkpoint-metric f1 --maximize-best-checkpoint-metric`` keeps the checkpoint
with the best dev F1. An entity that a window boundary cuts counts as two there; the
final scores of ``xlmr-ner`` join the windows of a sentence first.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from xlmr_plugin.evaluation.ner_metrics import chunks, precision_recall_f1


@dataclass
class XLMRNERCriterionConfig(FairseqDataclass):
    report_f1: bool = field(
        default=True,
        metadata={"help": "on validation, count gold, predicted and correct entities (conlleval chunks) "
                          "and log precision, recall and f1"},
    )


@register_criterion("xlmr_ner", dataclass=XLMRNERCriterionConfig)
class XLMRNERCriterion(FairseqCriterion):
    """Token classification loss of the ``xlmr_ner`` task's head."""

    def __init__(self, cfg: XLMRNERCriterionConfig, task):
        super().__init__(task)
        self.report_f1 = cfg.report_f1
        self.head = task.cfg.classification_head_name
        self.tags = task.tags
        self.label_pad = task.label_dictionary.pad()
        self.nspecial = task.label_dictionary.nspecial

    def forward(self, model, sample: Dict[str, Any], reduce: bool = True) -> Tuple[torch.Tensor, int, Dict]:
        logits = model(**sample["net_input"], features_only=True, classification_head_name=self.head)[0]  # B x T x K
        first = sample["target"].ne(self.label_pad)  # B x T: first pieces
        gold = sample["target"][first] - self.nspecial  # N
        loss = F.cross_entropy(logits[first].float(), gold, reduction="sum")
        predicted = logits.detach().argmax(-1)  # B x T
        sample_size = int(first.sum())
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "ncorrect": int((predicted[first] == gold).sum()),
        }
        if self.report_f1 and not model.training:
            logging_output.update(self._entity_counts(sample["target"] - self.nspecial, predicted, first))
        return loss, sample_size, logging_output

    def _entity_counts(self, gold: torch.Tensor, predicted: torch.Tensor, first: torch.Tensor) -> Dict[str, int]:
        """Gold, predicted and correct conlleval chunks, item by item."""
        counts = {"n_gold": 0, "n_pred": 0, "n_correct": 0}
        for g, p, m in zip(gold.tolist(), predicted.tolist(), first.tolist()):
            gold_chunks = set(chunks(self._strings(g, m)))
            pred_chunks = set(chunks(self._strings(p, m)))
            counts["n_gold"] += len(gold_chunks)
            counts["n_pred"] += len(pred_chunks)
            counts["n_correct"] += len(gold_chunks & pred_chunks)
        return counts

    def _strings(self, classes: List[int], keep: List[bool]) -> List[str]:
        return [self.tags[c] for c, k in zip(classes, keep) if k]

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict[str, Any]]) -> None:
        def total(key: str) -> float:
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = total("sample_size")
        if sample_size:
            metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
            metrics.log_scalar("accuracy", 100.0 * total("ncorrect") / sample_size, sample_size, round=1)
        metrics.log_scalar("ntokens", total("ntokens"))
        metrics.log_scalar("nsentences", total("nsentences"))
        if logging_outputs and "n_gold" in logging_outputs[0]:
            for key in ("n_gold", "n_pred", "n_correct"):
                metrics.log_scalar_sum("_" + key, total(key))
            for name in ("precision", "recall", "f1"):
                metrics.log_derived(name, lambda m, name=name: _entity_score(m, name))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _entity_score(meters, name: str) -> float:
    """One of the entity scores from the summed counts, to two decimals as fairseq logs it."""
    scores = precision_recall_f1(meters["_n_correct"].sum, meters["_n_pred"].sum, meters["_n_gold"].sum)
    return round(scores[name], 2)
