"""A head that classifies every position: RoBERTa's sentence classification head
(dropout, dense, activation, dropout, projection), applied to each token instead of
``<s>`` only. fairseq has heads for sentences and spans, none for tokens.

It keeps the ``dense`` and ``out_proj`` attributes, so RobertaModel's state-dict upgrade
reads its sizes and adds its fresh weights when a pretraining checkpoint without it
is restored, and it lives in ``model.classification_heads`` like the sentence heads.
"""
import torch
from fairseq.models.roberta.model import RobertaClassificationHead


class TokenClassificationHead(RobertaClassificationHead):
    """features B x T x C -> logits B x T x num_classes."""

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)
