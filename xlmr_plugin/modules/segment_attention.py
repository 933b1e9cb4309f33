"""Positions and attention within the segments of packed blocks.

A packed block (``--sample-break-mode packed``) holds several segments, each an ``<s>``
and a piece of one document; ``segment_ids`` (B x T) numbers them 1..k along each row,
0 for padding. For each segment to compute what it would alone, its positions restart
(fairseq's learned positions: ``padding_idx + 1`` onwards) and its tokens attend to its
tokens only.

Two ways to attend, same result (tests/test_packing.py):

- ``dense``: one boolean B x 1 x T x T mask, built once per forward, into the attention
  kernel (``attention_kernel``: SDPA's CPU flash kernel, or the explicit maths where that is
  faster). The CPU path; its memory grows as T².
- ``varlen``: the B x T tokens as a nested (jagged) tensor of runs of one segment id, which
  SDPA hands to FlashAttention's variable-length kernel (``cu_seqlens``) on CUDA: no T x T
  mask, no work across segments, attention dropout kept (torch's ``varlen_attn`` and
  FlexAttention have none). Padding runs are sequences of their own, ignored later.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from xlmr_plugin.modules.attention_kernel import attention


@dataclass(frozen=True)
class SegmentLayout:
    """What every layer's attention needs of a batch's ``segment_ids``, computed once."""

    ids: Tensor  # B x T, 1..k per row, 0 for padding
    mask: Optional[Tensor] = None  # dense: B x 1 x T x T, True where a query may attend a key
    offsets: Optional[Tensor] = None  # varlen: start of each run of one id in the B * T tokens, and B * T
    max_length: int = 0  # varlen: the longest run

    @classmethod
    def of(cls, ids: Tensor, varlen: Optional[bool] = None) -> "SegmentLayout":
        """The layout of ``ids`` for ``varlen`` attention, by default on CUDA only."""
        if not (ids.is_cuda if varlen is None else varlen):
            return cls(ids, mask=ids.unsqueeze(1).unsqueeze(-1) == ids.unsqueeze(1).unsqueeze(-2))
        flat = segment_starts(ids).view(-1).nonzero().view(-1)
        offsets = torch.cat([flat, flat.new_tensor([ids.numel()])])
        return cls(ids, offsets=offsets, max_length=int(offsets.diff().max()))


def segment_starts(ids: Tensor) -> Tensor:
    """B x T, True where a run of one segment id (padding included) begins."""
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    return starts


def segment_positions(ids: Tensor, padding_idx: int) -> Tensor:
    """B x T learned-position indices: ``padding_idx + 1`` at each segment's first token,
    counting up within it, ``padding_idx`` on padding (fairseq's ``make_positions`` per segment)."""
    index = torch.arange(ids.size(1), device=ids.device).expand_as(ids)
    first = torch.where(segment_starts(ids), index, 0).cummax(dim=1).values
    return (index - first + padding_idx + 1).masked_fill(ids.eq(0), padding_idx)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, layout: SegmentLayout, dropout_p: float) -> Tensor:
    """SDPA of B x H x T x D queries, keys and values within each segment of ``layout``."""
    if layout.mask is not None:
        return attention(q, k, v, layout.mask, dropout_p)
    bsz, heads, length, dim = q.shape

    def jagged(x: Tensor) -> Tensor:  # B x H x T x D -> runs x H x j x D
        values = x.transpose(1, 2).reshape(bsz * length, heads, dim)
        return torch.nested.nested_tensor_from_jagged(
            values, offsets=layout.offsets, max_seqlen=layout.max_length).transpose(1, 2)

    out = F.scaled_dot_product_attention(jagged(q), jagged(k), jagged(v), dropout_p=dropout_p)
    return out.transpose(1, 2).values().view(bsz, length, heads, dim).transpose(1, 2)
