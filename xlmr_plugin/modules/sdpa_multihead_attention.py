"""Self-attention through ``torch.nn.functional.scaled_dot_product_attention``.

Same parameters and maths as fairseq's MultiheadAttention; on GPU torch then picks the
flash or memory-efficient kernel, which never materialises the T x T attention matrix (on
CPU, ``attention_kernel`` picks SDPA's or the explicit maths, whichever is faster).
Packed blocks send a ``SegmentLayout`` where the padding mask goes (fairseq's encoder layer
hands its padding mask to self-attention untouched), and attention stays inside each segment.
"""
from typing import Optional, Tuple, Union

import torch
from fairseq.modules import MultiheadAttention
from torch import Tensor

from xlmr_plugin.modules.attention_kernel import attention
from xlmr_plugin.modules.segment_attention import SegmentLayout, segment_attention


class SDPAMultiheadAttention(MultiheadAttention):
    """fairseq's MultiheadAttention whose plain self-attention path runs SDPA.

    Anything SDPA cannot express the same way (attention weights, incremental decoding,
    an explicit attn_mask, bias_kv, zero attention) falls back to fairseq's code.
    """

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor],
        value: Optional[Tensor],
        key_padding_mask: Union[Tensor, SegmentLayout, None] = None,
        incremental_state=None,
        need_weights: bool = True,
        static_kv: bool = False,
        attn_mask: Optional[Tensor] = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        packed = isinstance(key_padding_mask, SegmentLayout)
        if (
            need_weights or need_head_weights or before_softmax or static_kv
            or incremental_state is not None or attn_mask is not None
            or not self.self_attention or self.bias_k is not None or self.add_zero_attn
        ):
            if packed:
                raise ValueError("packed segments need plain self-attention: no attention weights, "
                                 "attn_mask, incremental state, bias_kv or zero attention")
            return super().forward(
                query, key, value, key_padding_mask=key_padding_mask,
                incremental_state=incremental_state, need_weights=need_weights,
                static_kv=static_kv, attn_mask=attn_mask, before_softmax=before_softmax,
                need_head_weights=need_head_weights,
            )
        tgt_len, bsz, embed_dim = query.size()
        q, k, v = self.project_qkv(query)
        dropout = self.dropout_module.p if self.training else 0.0
        if packed:
            x = segment_attention(q, k, v, key_padding_mask, dropout)
        else:
            mask = None
            if key_padding_mask is not None:
                # B x 1 x 1 x S, True where a key may be attended; the encoder passes None
                # when the batch has no padding, which lets SDPA pick the flash kernel
                mask = ~key_padding_mask.to(torch.bool).view(bsz, 1, 1, tgt_len)
            x = attention(q, k, v, mask, dropout)
        # B x H x T x D -> T x B x C
        x = x.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        return self.out_proj(x), None

    def project_qkv(self, query: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """T x B x C -> three B x H x T x D tensors: queries, keys, values (unscaled)."""
        tgt_len, bsz, _ = query.size()

        def split_heads(x: Tensor) -> Tensor:
            return x.view(tgt_len, bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        return split_heads(self.q_proj(query)), split_heads(self.k_proj(query)), split_heads(self.v_proj(query))

