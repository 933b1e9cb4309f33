"""Start / end logits over every token: the span-extraction QA head (SQuAD, MLQA).

It lives in RobertaModel's ``classification_heads`` so that the model's own checkpoint
upgrade handles it: a pretraining checkpoint gets it freshly initialised, a fine-tuned
one reloads it. That upgrade reads ``dense`` and ``out_proj`` of every head, hence
RobertaClassificationHead's shape (dense, activation, dropout, projection), applied at
each position instead of at <s> only.
"""
import torch
from fairseq import utils
from torch import nn


class SpanPredictionHead(nn.Module):
    def __init__(self, input_dim: int, inner_dim: int, activation_fn: str, dropout: float):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.dropout = nn.Dropout(p=dropout)
        self.out_proj = nn.Linear(inner_dim, 2)

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        """B x T x C encoder features -> B x T x 2 (start, end) logits."""
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        return self.out_proj(self.dropout(x))
