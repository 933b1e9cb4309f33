"""RoBERTa's LM head before its output projection, for the paths that project differently.

fairseq's RobertaLMHead runs dense -> activation -> LayerNorm, then projects on the
(tied) embedding weight plus a bias. The padded-vocabulary lever and the fused cross
entropy keep the first part and replace only the projection; both read it here, so the
three paths cannot drift apart.
"""
from fairseq.models.roberta.model import RobertaLMHead
from torch import Tensor


def lm_head_features(head: RobertaLMHead, features: Tensor) -> Tensor:
    """N x C encoder features -> N x C inputs of ``head``'s output projection
    (``head.weight``: V x C, ``head.bias``: V)."""
    return head.layer_norm(head.activation_fn(head.dense(features)))
