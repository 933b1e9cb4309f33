"""Speed levers of the ``xlmr_roberta`` model, each a named switch outside the model
definition, applied in this order (torchtitan style):

1. ``--checkpoint-activations`` (fairseq's own flag, applied while fairseq builds the
   encoder): recompute each layer in backward, for larger batches.
2. ``--attention-impl sdpa`` (the model's encoder builds
   ``modules.sdpa_transformer_encoder``): torch's scaled_dot_product_attention; no mask
   when a batch has no padding, so full blocks take the flash kernel. Packed blocks attend
   within their segments (``modules.segment_attention``: a block-diagonal mask on CPU,
   variable-length attention on CUDA).
3. ``--fuse-qkv`` (:func:`fuse_qkv`): one matmul for queries, keys and values.
4. ``--vocab-pad-multiple N`` (:func:`pad_vocab`): the output projection runs on the
   vocabulary padded to a multiple of N rows; logits and loss keep the true size.
5. ``--compile-layers`` (:func:`compile_layers`): ``torch.compile`` of each encoder layer,
   last, so that it captures the modules as the levers above left them.

The criterion's levers (``xlmr_masked_lm``): ``--fused-cross-entropy`` (projection and
cross entropy in row chunks, ``modules.linear_cross_entropy``) and
``--no-train-language-metrics`` (no per-language host syncs in training steps).

None of them adds, renames or reshapes a parameter or buffer: class swaps and
forward-time computations only, so checkpoints load in stock fairseq.
"""
import logging
from typing import Tuple

import torch
import torch.nn.functional as F
from fairseq.models.roberta.model import RobertaLMHead
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from torch import Tensor, nn

from xlmr_plugin.modules.lm_head import lm_head_features
from xlmr_plugin.modules.sdpa_multihead_attention import SDPAMultiheadAttention

logger = logging.getLogger(__name__)


class FusedQKVAttention(SDPAMultiheadAttention):
    """SDPA attention whose q, k, v projections run as one (3C x C) matmul.

    The weights stay in q_proj, k_proj, v_proj (the state dict is unchanged); they are
    concatenated at each forward, a copy of 3C x C per layer, small next to the matmul.
    """

    def project_qkv(self, query: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        tgt_len, bsz, _ = query.size()
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(query, weight, bias)  # T x B x 3C
        # T x B x 3 x H x D -> 3 x B x H x T x D
        qkv = qkv.view(tgt_len, bsz, 3, self.num_heads, self.head_dim).permute(2, 1, 3, 0, 4)
        return qkv[0], qkv[1], qkv[2]


def fuse_qkv(model: nn.Module) -> int:
    """Switch every SDPA attention module of ``model`` to the fused projection, in place.

    Needs ``--attention-impl sdpa`` (fairseq's own attention keeps its three matmuls).
    Returns how many modules were switched.
    """
    switched = 0
    for module in model.modules():
        if type(module) is SDPAMultiheadAttention and module.q_proj.bias is not None:
            module.__class__ = FusedQKVAttention
            switched += 1
    logger.info("lever fuse_qkv: %d attention modules", switched)
    return switched


class PaddedVocabLMHead(RobertaLMHead):
    """RoBERTa's LM head whose output matmul runs on the vocabulary padded to
    ``vocab_pad_multiple`` rows (zero weight rows and bias), so the logits' rows are
    aligned for tensor cores; the logits returned are sliced back to the dictionary's
    size. The weight (tied to the embeddings) is not resized: it is padded per forward,
    a copy of V x C, small next to the matmul on GPU."""

    vocab_pad_multiple: int = 1

    def forward(self, features: Tensor, masked_tokens=None, **kwargs) -> Tensor:
        if masked_tokens is not None:
            features = features[masked_tokens, :]
        x = lm_head_features(self, features)
        vocab = self.weight.size(0)
        pad = (-vocab) % self.vocab_pad_multiple
        logits = F.linear(x, F.pad(self.weight, (0, 0, 0, pad)), F.pad(self.bias, (0, pad)))
        return logits[..., :vocab]


def pad_vocab(model: nn.Module, multiple: int) -> None:
    """Pad the LM head's output projection to ``multiple`` rows (e.g. 64; 1 leaves it).

    The fused cross entropy reads the same attribute and pads inside its own matmul.
    """
    if multiple < 1:
        raise ValueError(f"--vocab-pad-multiple must be >= 1, got {multiple}")
    head = model.encoder.lm_head
    if type(head) is RobertaLMHead:
        head.__class__ = PaddedVocabLMHead
    head.vocab_pad_multiple = multiple
    vocab = head.weight.size(0)
    logger.info("lever pad_vocab: output projection %d -> %d rows", vocab, vocab + (-vocab) % multiple)


def compile_layers(model: nn.Module, backend: str = "inductor") -> int:
    """``torch.compile`` each encoder layer in place (``nn.Module.compile``: parameters,
    names and state dict unchanged). Per-layer ("regional") compilation compiles one
    layer's graph once and reuses it for all, and leaves the data-dependent parts (the
    masked-position gather, the loss) eager."""
    layers = [m for m in model.modules() if isinstance(m, TransformerEncoderLayerBase)]
    for layer in layers:
        layer.compile(backend=backend)
    logger.info("lever compile_layers: %d layers, backend %s", len(layers), backend)
    return len(layers)


def apply_levers(model: nn.Module, args) -> None:
    """Apply the model levers that ``args`` switches on, in the documented order."""
    if getattr(args, "fuse_qkv", False):
        fuse_qkv(model)
    multiple = getattr(args, "vocab_pad_multiple", 1) or 1
    if multiple > 1:
        pad_vocab(model, multiple)
    if getattr(args, "compile_layers", False):
        compile_layers(model)
