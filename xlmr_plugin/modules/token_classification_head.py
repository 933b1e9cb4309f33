"""A head that classifies every position: RoBERTa's sentence classification head
(dropout, dense, activation, dropout, projection), applied to each token instead of
``<s>`` only. Named-entity tags are its classes in ``xlmr_ner``; span extraction
(``xlmr_squad``) is the same head with two classes, the start and end logits.

It keeps the ``dense`` and ``out_proj`` attributes, so RobertaModel's state-dict upgrade
reads its sizes and adds its fresh weights when a pretraining checkpoint without it
is restored, and it lives in ``model.classification_heads`` like the sentence heads.
"""
import argparse

import torch
from fairseq.models.roberta.model import RobertaClassificationHead


class TokenClassificationHead(RobertaClassificationHead):
    """features B x T x C -> logits B x T x num_classes."""

    @classmethod
    def for_encoder(cls, args: argparse.Namespace, num_classes: int) -> "TokenClassificationHead":
        """A head sized as RoBERTa sizes its sentence heads for a model of ``args``."""
        return cls(input_dim=args.encoder_embed_dim, inner_dim=args.encoder_embed_dim, num_classes=num_classes,
                   activation_fn=args.pooler_activation_fn, pooler_dropout=args.pooler_dropout)

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)
