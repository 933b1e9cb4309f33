"""fairseq XLM-R checkpoints <-> Hugging Face `XLMRobertaForMaskedLM` directories.

`xlmr-export-hf CKPT OUT` writes config.json, model.safetensors and a tokenizer
built from the SentencePiece model; `xlmr-import-hf HF_DIR OUT` writes the
official XLM-R release layout (model.pt, dict.txt, sentencepiece.bpe.model)
that the plugin loads and continues pretraining from (`--restore-file`).

Both directions are renamings of the same tensors: the plugin keeps fairseq
RobertaModel's state-dict keys, and HF's XLM-R ids equal fairseq's (SentencePiece
id + 1, <mask> last), so nothing is re-learned or re-ordered. transformers is an
optional dependency (`pip install -e .[hf]`), imported only here.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import sentencepiece as spm
import torch

from xlmr_plugin.models.shapes import Shape

logger = logging.getLogger(__name__)

FS = "encoder.sentence_encoder."
# fairseq name (after FS, or under encoder.lm_head.) -> HF name, per layer and global
_LAYER = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
_GLOBAL = {
    FS + "embed_tokens.weight": "roberta.embeddings.word_embeddings.weight",
    FS + "embed_positions.weight": "roberta.embeddings.position_embeddings.weight",
    FS + "layernorm_embedding.weight": "roberta.embeddings.LayerNorm.weight",
    FS + "layernorm_embedding.bias": "roberta.embeddings.LayerNorm.bias",
    "encoder.lm_head.dense.weight": "lm_head.dense.weight",
    "encoder.lm_head.dense.bias": "lm_head.dense.bias",
    "encoder.lm_head.layer_norm.weight": "lm_head.layer_norm.weight",
    "encoder.lm_head.layer_norm.bias": "lm_head.layer_norm.bias",
    "encoder.lm_head.weight": "lm_head.decoder.weight",
    "encoder.lm_head.bias": "lm_head.bias",
}
_LAYER_KEY = re.compile(r"^encoder\.sentence_encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


class ConversionError(ValueError):
    """A checkpoint or directory that cannot be converted; the message says why."""


def fairseq_to_hf(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a fairseq RobertaModel (post-norm) state dict to XLMRobertaForMaskedLM's."""
    if FS + "layer_norm.weight" in state:
        raise ConversionError("pre-norm checkpoints (XLM-R XL/XXL) map to HF's XLMRobertaXL, not supported here")
    out = {}
    for key, tensor in state.items():
        if key in _GLOBAL:
            out[_GLOBAL[key]] = tensor
        elif (m := _LAYER_KEY.match(key)) and m.group(2) in _LAYER:
            out[f"roberta.encoder.layer.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}"] = tensor
        elif not key.endswith("version") and not key.endswith("_float_tensor"):
            raise ConversionError(f"no Hugging Face counterpart for fairseq parameter {key}")
    # XLM-R has no segments: HF's single token-type row must add nothing
    width = state[FS + "embed_tokens.weight"].shape[1]
    out["roberta.embeddings.token_type_embeddings.weight"] = torch.zeros(1, width)
    out["lm_head.decoder.bias"] = out["lm_head.bias"]
    return out


def hf_to_fairseq(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of `fairseq_to_hf`."""
    to_fs = {hf: fs for fs, hf in _GLOBAL.items()}
    layer_to_fs = {hf: fs for fs, hf in _LAYER.items()}
    hf_layer = re.compile(r"^roberta\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
    out = {}
    for key, tensor in state.items():
        if key in to_fs:
            out[to_fs[key]] = tensor
        elif (m := hf_layer.match(key)) and m.group(2) in layer_to_fs:
            out[f"{FS}layers.{m.group(1)}.{layer_to_fs[m.group(2)]}.{m.group(3)}"] = tensor
        elif key not in ("roberta.embeddings.token_type_embeddings.weight", "lm_head.decoder.bias",
                         "roberta.embeddings.position_ids") and not key.startswith("roberta.pooler"):
            raise ConversionError(f"no fairseq counterpart for Hugging Face parameter {key}")
    # fairseq has no segments: fold the token-type row every token gets (id 0) into the positions
    token_type = state.get("roberta.embeddings.token_type_embeddings.weight")
    if token_type is not None:
        out[FS + "embed_positions.weight"] = out[FS + "embed_positions.weight"] + token_type[0]
    if "encoder.lm_head.weight" not in out:  # tied and saved once
        out["encoder.lm_head.weight"] = out[FS + "embed_tokens.weight"]
    return out


@dataclass(frozen=True)
class Sizes:
    """A fairseq state dict's encoder shape, vocabulary and position rows."""

    shape: Shape
    vocab: int
    positions: int  # rows of the position embedding: learned positions + fairseq's padding offset


def sizes(state: Dict[str, torch.Tensor], heads: int) -> Sizes:
    """The sizes read off the tensors' shapes; ``heads`` from the model's config, since
    splitting the attention into heads leaves no trace in the tensors."""
    embed = state[FS + "embed_tokens.weight"]
    layers = {int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))}
    shape = Shape(
        layers=len(layers),
        width=embed.shape[1],
        heads=heads,
        ffn=state[FS + "layers.0.fc1.weight"].shape[0],
        prenorm=FS + "layer_norm.weight" in state,  # the final LayerNorm of pre-norm encoders
    )
    return Sizes(shape, vocab=embed.shape[0], positions=state[FS + "embed_positions.weight"].shape[0])


def check_xlmr_dictionary(spm_model: Path, dict_path: Path, vocab: int) -> None:
    """HF's XLM-R tokenizer assumes fairseq id = SentencePiece id + 1 and <mask> last."""
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    with open(dict_path, encoding="utf-8") as f:
        pieces = [line.rsplit(" ", 1)[0] for line in f]
    if pieces != [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]:
        raise ConversionError(f"{dict_path} does not list {spm_model}'s pieces in id order (XLM-R layout)")
    if vocab != len(pieces) + 5:  # <s> <pad> </s> <unk>, the pieces, <mask>
        raise ConversionError(f"the model has {vocab} embeddings, {dict_path} implies {len(pieces) + 5}")
