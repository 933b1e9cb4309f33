"""Scaled dot-product attention by whichever kernel computes it fastest.

On GPU that is torch's SDPA, which picks the flash or memory-efficient kernel. On CPU in
bf16, SDPA's flash kernel is slow in the backward pass at short blocks: forward and
backward of 32 x 4 heads x 128 tokens take it 27 ms against 11 ms for the explicit maths,
the two are level at 256 tokens, and SDPA is the faster at 512; in fp32 SDPA is the faster
at every length (``benchmarks/cpu_kernels.py``, ``benchmarks/results/cpu_kernels_cpu2.md``).
The explicit maths is fairseq's own MultiheadAttention's: bf16 scores of the scaled
queries, softmax, weighted values; its memory grows as T², a few MB a layer at these lengths.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# the longest block for which the explicit maths runs on CPU in bf16 (level with SDPA at 256)
EXPLICIT_MAX_LENGTH = 256


def explicit_is_faster(q: Tensor) -> bool:
    """Whether B x H x T x D queries (and keys of the same length) attend faster explicitly."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.size(-2) <= EXPLICIT_MAX_LENGTH


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
    """SDPA of B x H x T x D queries, keys and values; ``mask`` (broadcast to B x H x T x T)
    is True where a query may attend a key. ``dropout_p`` applies as given (0 in eval)."""
    if explicit_is_faster(q):
        with torch.profiler.record_function("explicit_attention"):  # named in profiles, as SDPA's kernels are
            return explicit_attention(q, k, v, mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None,
                       dropout_p: float = 0.0) -> Tensor:
    """``attention``'s maths written out, as fairseq's MultiheadAttention computes it."""
    scores = torch.matmul(q * q.size(-1) ** -0.5, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(F.dropout(torch.softmax(scores, dim=-1), dropout_p), v)
