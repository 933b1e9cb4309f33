"""fairseq's Transformer encoder with its layers attending through SDPAMultiheadAttention.

fairseq builds each layer's attention in ``build_self_attention`` and each layer in the
encoder's ``build_encoder_layer``; overriding those hooks, as fairseq's own Linformer
example does, puts the SDPA module in place while the model is built. The modules are
built in the same order with the same arguments, so parameters, their initialisation and
the state-dict keys are those of fairseq's TransformerEncoder.
"""
from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerConfig, TransformerEncoder
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from torch import nn

from xlmr_plugin.modules.sdpa_multihead_attention import SDPAMultiheadAttention


class SDPATransformerEncoderLayer(TransformerEncoderLayerBase):
    """fairseq's encoder layer (post- or pre-norm) with SDPA self-attention."""

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
