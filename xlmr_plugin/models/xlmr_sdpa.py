"""Model ``xlmr_sdpa``: fairseq's RobertaModel with SDPA attention, and the XLM-R sizes.

The state dict keeps RobertaModel's keys and shapes, so checkpoints load in stock
fairseq (``XLMRModel.from_pretrained``, ``RobertaModel``) and back. fairseq already
builds apex FusedLayerNorm on GPU when apex imports, and the criterion runs the LM head
on masked positions only; this model adds the attention kernel and the optional speed
levers of ``xlmr_plugin/levers.py`` (``--fuse-qkv``, ``--vocab-pad-multiple``,
``--compile-layers``), applied after the model is built, in the order documented there.
"""
from typing import Any, Callable, Dict, NamedTuple

from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaModel, base_architecture, roberta_prenorm_architecture
from fairseq.utils import safe_getattr

from xlmr_plugin.models.levers import apply_levers
from xlmr_plugin.modules.sdpa_multihead_attention import use_sdpa_attention



@register_model("xlmr_sdpa")
class XLMRSdpaModel(RobertaModel):
    """RoBERTa encoder + tied LM head, as XLM-R; no language embeddings."""

    @staticmethod
    def add_args(parser) -> None:
        RobertaModel.add_args(parser)
        parser.add_argument(
            "--attention-impl", choices=["sdpa", "fairseq"],
            help="sdpa: torch scaled_dot_product_attention (flash / memory-efficient kernels on GPU); "
                 "fairseq: fairseq's MultiheadAttention. Same maths and parameters.",
        )
        # speed levers (xlmr_plugin/levers.py); none changes the state dict
        parser.add_argument("--fuse-qkv", action="store_true",
                            help="one matmul for the q, k, v projections (needs --attention-impl sdpa)")
        parser.add_argument("--vocab-pad-multiple", type=int, metavar="N",
                            help="run the output projection on the vocabulary padded to a multiple of N "
                                 "rows (64 for tensor cores); the loss uses the true size. Default 1: off")
        parser.add_argument("--compile-layers", action="store_true",
                            help="torch.compile each encoder layer")

    @classmethod
    def build_model(cls, args, task) -> "XLMRSdpaModel":
        model = super().build_model(args, task)
        if safe_getattr(args, "attention_impl", "sdpa") == "sdpa":
            use_sdpa_attention(model)
        apply_levers(model, args)
        return model


class Size(NamedTuple):
    layers: int
    width: int
    heads: int
    ffn: int
    prenorm: bool = False


# Parameter counts are with XLM-R's 250,002-symbol dictionary (tied LM head).
SIZES: Dict[str, Size] = {
    "xlmr_base": Size(12, 768, 12, 3072),  # 278.3M
    "xlmr_large": Size(24, 1024, 16, 4096),  # 560.1M
    # the paper's capacity ablation: base depth, wider; 64-dim heads, FFN 4x width
    "xlmr_base_960": Size(12, 960, 15, 3840),  # 374.5M
    "xlmr_base_1152": Size(12, 1152, 18, 4608),  # 481.5M
    # XL and XXL (Goyal et al. 2021): pre-norm, no embedding LayerNorm; 3.48B and 10.7B
    "xlmr_xl": Size(36, 2560, 32, 10240, prenorm=True),
    "xlmr_xxl": Size(48, 4096, 32, 16384, prenorm=True),
    # for tests and the CPU demo, not for results
    "xlmr_tiny": Size(2, 64, 4, 256),
}


def _architecture(size: Size) -> Callable[[Any], None]:
    """An arch function that only sets defaults, as fairseq's own: flags still override."""

    def set_defaults(args) -> None:
        args.encoder_layers = safe_getattr(args, "encoder_layers", size.layers)
        args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", size.width)
        args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", size.heads)
        args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", size.ffn)
        # 512 learned positions (+ padding offset: 514 rows), as released XLM-R checkpoints
        args.max_positions = safe_getattr(args, "max_positions", 512)
        args.attention_impl = safe_getattr(args, "attention_impl", "sdpa")
        args.fuse_qkv = safe_getattr(args, "fuse_qkv", False)
        args.vocab_pad_multiple = safe_getattr(args, "vocab_pad_multiple", 1)
        args.compile_layers = safe_getattr(args, "compile_layers", False)
        # post-norm: GELU, embedding LayerNorm; pre-norm drops the latter, adds a final one
        (roberta_prenorm_architecture if size.prenorm else base_architecture)(args)

    return set_defaults


for _name, _size in SIZES.items():
    register_model_architecture("xlmr_sdpa", _name)(_architecture(_size))
