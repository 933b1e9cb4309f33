"""Model ``xlmr_roberta``: fairseq's RobertaModel as XLM-R, with the ``xlmr_*`` architectures.

The state dict keeps RobertaModel's keys and shapes, so checkpoints load in stock
fairseq (``XLMRModel.from_pretrained``, ``RobertaModel``) and back; checkpoints store
the architecture (``xlmr_base`` ...), which names this model. fairseq already builds
apex FusedLayerNorm on GPU when apex imports, and the criterion runs the LM head on
masked positions only; this model chooses the attention kernel while it builds the
encoder (``--attention-impl``) and then applies the optional speed levers of
``models/levers.py`` (``--fuse-qkv``, ``--vocab-pad-multiple``, ``--compile-layers``),
in the order documented there. The shapes are ``models/shapes.py``'s. With
``segment_ids`` (packed blocks, ``--sample-break-mode packed``) each segment of a block
is encoded as if alone; the parameters are the same.
"""
import logging
from typing import Any, Callable, Dict, Optional, Tuple

from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import model as roberta
from fairseq.models.roberta.model import RobertaEncoder, RobertaModel, base_architecture, roberta_prenorm_architecture
from fairseq.models.transformer import TransformerEncoder
from fairseq.utils import safe_getattr, safe_hasattr
from omegaconf import OmegaConf
from torch import Tensor, nn

from xlmr_plugin.models.levers import apply_levers
from xlmr_plugin.models.shapes import MAX_POSITIONS, SHAPES, Shape
from xlmr_plugin.modules.sdpa_transformer_encoder import SDPATransformerEncoder

logger = logging.getLogger(__name__)


class XLMRRobertaEncoder(RobertaEncoder):
    """RoBERTa's encoder whose Transformer attends through SDPA under ``--attention-impl sdpa``."""

    def build_encoder(self, args, dictionary, embed_tokens) -> TransformerEncoder:
        if safe_getattr(args, "attention_impl", "sdpa") != "sdpa":
            return super().build_encoder(args, dictionary, embed_tokens)
        encoder = SDPATransformerEncoder(args, dictionary, embed_tokens)
        # BERT init, looked up at call time as RobertaEncoder does (a test builds 10B
        # parameters on the meta device by replacing it)
        encoder.apply(roberta.init_bert_params)
        logger.info("attention: scaled_dot_product_attention in %d layers", len(encoder.layers))
        return encoder

    def forward(self, src_tokens: Tensor, features_only: bool = False, return_all_hiddens: bool = False,
                masked_tokens: Optional[Tensor] = None, segment_ids: Optional[Tensor] = None,
                **unused) -> Tuple[Tensor, Dict[str, Any]]:
        """RobertaEncoder.forward, passing ``segment_ids`` on (fairseq's drops unknown arguments)."""
        x, extra = self.extract_features(src_tokens, return_all_hiddens=return_all_hiddens, segment_ids=segment_ids)
        if not features_only:
            x = self.output_layer(x, masked_tokens=masked_tokens)
        return x, extra

    def extract_features(self, src_tokens: Tensor, return_all_hiddens: bool = False,
                         segment_ids: Optional[Tensor] = None, **kwargs) -> Tuple[Tensor, Dict[str, Any]]:
        if segment_ids is None:
            return super().extract_features(src_tokens, return_all_hiddens=return_all_hiddens, **kwargs)
        require_segment_attention(self)
        encoder_out = self.sentence_encoder(src_tokens, return_all_hiddens=return_all_hiddens,
                                            token_embeddings=kwargs.get("token_embeddings"), segment_ids=segment_ids)
        features = encoder_out["encoder_out"][0].transpose(0, 1)  # T x B x C -> B x T x C
        return features, {"inner_states": encoder_out["encoder_states"] if return_all_hiddens else None}


def require_segment_attention(model: nn.Module) -> None:
    """Refuse, before any step, a model that would attend across the segments of packed
    blocks: fairseq's own attention has no way to keep them apart."""
    encoder = getattr(model, "encoder", model)  # a RobertaModel, or its RobertaEncoder
    if not isinstance(getattr(encoder, "sentence_encoder", None), SDPATransformerEncoder):
        impl = safe_getattr(getattr(model, "args", None), "attention_impl", None)
        raise ValueError(
            "--sample-break-mode packed needs the xlmr_roberta model with --attention-impl sdpa "
            f"(attention kept inside each packed segment); this model has "
            f"{f'--attention-impl {impl}' if impl else type(model).__name__}"
        )


@register_model("xlmr_roberta")
class XLMRRobertaModel(RobertaModel):
    """RoBERTa encoder + tied LM head, as XLM-R; no language embeddings."""

    @staticmethod
    def add_args(parser) -> None:
        RobertaModel.add_args(parser)
        parser.add_argument(
            "--attention-impl", choices=["sdpa", "fairseq"],
            help="sdpa: torch scaled_dot_product_attention (flash / memory-efficient kernels on GPU); "
                 "fairseq: fairseq's MultiheadAttention. Same maths and parameters.",
        )
        # speed levers (models/levers.py); none changes the state dict
        parser.add_argument("--fuse-qkv", action="store_true",
                            help="one matmul for the q, k, v projections (needs --attention-impl sdpa)")
        parser.add_argument("--vocab-pad-multiple", type=int, metavar="N",
                            help="run the output projection on the vocabulary padded to a multiple of N "
                                 "rows (64 for tensor cores); the loss uses the true size. Default 1: off")
        parser.add_argument("--compile-layers", action="store_true",
                            help="torch.compile each encoder layer")

    @classmethod
    def build_model(cls, args, task) -> "XLMRRobertaModel":
        """RobertaModel.build_model's steps with XLMRRobertaEncoder (fairseq's names
        RobertaEncoder outright), then the levers."""
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, False)
        base_architecture(args)
        if not safe_hasattr(args, "max_positions"):
            if not safe_hasattr(args, "tokens_per_sample"):
                args.tokens_per_sample = task.max_positions()
            args.max_positions = args.tokens_per_sample
        encoder = XLMRRobertaEncoder(args, task.source_dictionary)
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, True)
        model = cls(args, encoder)
        apply_levers(model, args)
        return model


def _architecture(shape: Shape) -> Callable[[Any], None]:
    """An arch function that only sets defaults, as fairseq's own: flags still override."""

    def set_defaults(args) -> None:
        args.encoder_layers = safe_getattr(args, "encoder_layers", shape.layers)
        args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", shape.width)
        args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", shape.heads)
        args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", shape.ffn)
        # learned positions (+ padding offset: 514 rows), as released XLM-R checkpoints
        args.max_positions = safe_getattr(args, "max_positions", MAX_POSITIONS)
        args.attention_impl = safe_getattr(args, "attention_impl", "sdpa")
        args.fuse_qkv = safe_getattr(args, "fuse_qkv", False)
        args.vocab_pad_multiple = safe_getattr(args, "vocab_pad_multiple", 1)
        args.compile_layers = safe_getattr(args, "compile_layers", False)
        # post-norm: GELU, embedding LayerNorm; pre-norm drops the latter, adds a final one
        (roberta_prenorm_architecture if shape.prenorm else base_architecture)(args)

    return set_defaults


for _name, _shape in SHAPES.items():
    register_model_architecture("xlmr_roberta", _name)(_architecture(_shape))
