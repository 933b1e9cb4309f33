"""Mean pooling of token features into one vector per sentence.

The sentence embeddings of the Python API and the features of the downstream probe are
the same mean, so that a probe score computed during pretraining describes the embeddings
a user gets from ``XLMR.sentence_embeddings``.
"""
import torch


def mean_over_tokens(features: torch.Tensor, tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """B x C mean of ``features`` (B x T x C) over the positions of ``tokens`` (B x T) that
    are not ``pad``: a sentence's vector does not depend on what it is batched with."""
    keep = tokens.ne(pad).unsqueeze(-1).type_as(features)  # B x T x 1
    return (features * keep).sum(dim=1) / keep.sum(dim=1)
