"""fairseq's Transformer encoder with its layers attending through SDPAMultiheadAttention.

fairseq builds each layer's attention in ``build_self_attention`` and each layer in the
encoder's ``build_encoder_layer``; overriding those hooks, as fairseq's own Linformer
example does, puts the SDPA module in place while the model is built. The modules are
built in the same order with the same arguments, so parameters, their initialisation and
the state-dict keys are those of fairseq's TransformerEncoder.

Given ``segment_ids`` (packed blocks), the encoder runs its own copy of fairseq's forward
with positions restarting at each segment and the segments' layout in place of the
padding mask; without them, fairseq's forward runs unchanged.
"""
from typing import Dict, List, Optional

from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerConfig, TransformerEncoder
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlmr_plugin.modules.sdpa_multihead_attention import SDPAMultiheadAttention
from xlmr_plugin.modules.segment_attention import SegmentLayout, segment_positions


class SDPATransformerEncoderLayer(TransformerEncoderLayerBase):
    """fairseq's encoder layer (post- or pre-norm) with SDPA self-attention.

    Its GELU is torch's on the tensor as it comes: fairseq's ``gelu`` converts a bf16 or fp16
    input to fp32 and back, which torch's kernels do inside (the same values and gradients,
    bit for bit), and on CPU the two conversions took three quarters of the activation's time.
    """

    def __init__(self, cfg: TransformerConfig, return_fc: bool = False):
        super().__init__(cfg, return_fc=return_fc)
        if cfg.activation_fn == "gelu":
            self.activation_fn = F.gelu

    def build_self_attention(self, embed_dim: int, cfg: TransformerConfig) -> SDPAMultiheadAttention:
        return SDPAMultiheadAttention(
            embed_dim,
            cfg.encoder.attention_heads,
            dropout=cfg.attention_dropout,
            self_attention=True,
            q_noise=self.quant_noise,
            qn_block_size=self.quant_noise_block_size,
            xformers_att_config=cfg.encoder.xformers_att_config,
        )


class SDPATransformerEncoder(TransformerEncoder):
    """fairseq's (argparse) TransformerEncoder whose layers are SDPATransformerEncoderLayer."""

    def build_encoder_layer(self, args) -> nn.Module:
        cfg = TransformerConfig.from_namespace(args)
        layer = SDPATransformerEncoderLayer(cfg, return_fc=self.return_fc)
        # fairseq's own build_encoder_layer names its layer class outright; its wrapping, kept:
        # --checkpoint-activations, and FSDP always around a checkpointed layer
        checkpoint = cfg.checkpoint_activations
        if checkpoint:
            layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
        return fsdp_wrap(layer, min_num_params=0 if checkpoint else cfg.min_params_to_wrap)

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        return_all_hiddens: bool = False,
        token_embeddings: Optional[Tensor] = None,
        segment_ids: Optional[Tensor] = None,
    ) -> Dict[str, List[Tensor]]:
        if segment_ids is None:
            return super().forward(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
        return self.forward_segments(src_tokens, segment_ids, return_all_hiddens, token_embeddings)

    def forward_segments(
        self,
        src_tokens: Tensor,
        segment_ids: Tensor,
        return_all_hiddens: bool = False,
        token_embeddings: Optional[Tensor] = None,
    ) -> Dict[str, List[Tensor]]:
        """fairseq's ``forward_scriptable`` for B x T packed blocks of segments numbered
        1..k by ``segment_ids`` (0: padding): each segment is encoded as if alone."""
        padding = segment_ids.eq(0)  # B x T
        x = embed = self.embed_scale * (self.embed_tokens(src_tokens) if token_embeddings is None else token_embeddings)
        if self.embed_positions is not None:
            x = x + self.segment_position_embeddings(segment_ids)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x)
        if self.quant_noise is not None:
            x = self.quant_noise(x)
        x = (x * (1 - padding.unsqueeze(-1).type_as(x))).transpose(0, 1)  # B x T x C -> T x B x C
        layout = SegmentLayout.of(segment_ids)
        states = [x] if return_all_hiddens else []
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=layout)
            x = x[0] if isinstance(x, tuple) else x  # (x, fc result) when return_fc
            if return_all_hiddens:
                states.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return {
            "encoder_out": [x],  # T x B x C
            "encoder_padding_mask": [padding],  # B x T
            "encoder_embedding": [embed],  # B x T x C
            "encoder_states": states,  # List[T x B x C]
            "fc_results": [],
            "src_tokens": [],
            "src_lengths": [(~padding).sum(dim=1, dtype=torch.int32).reshape(-1, 1)],
        }

    def segment_position_embeddings(self, segment_ids: Tensor) -> Tensor:
        """B x T x C learned positions restarting at each segment. fairseq's
        LearnedPositionalEmbedding refuses given positions while it has a padding index,
        so its table is read here as its own forward reads it."""
        table = self.embed_positions
        if not isinstance(table, nn.Embedding):
            raise ValueError("packed segments need learned positions (--encoder-learned-pos)")
        positions = segment_positions(segment_ids, table.padding_idx)
        return F.embedding(positions, table.weight, table.padding_idx, table.max_norm, table.norm_type,
                           table.scale_grad_by_freq, table.sparse)
