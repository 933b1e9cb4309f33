"""Load checkpoints of the official XLM-R release layout into the plugin's architectures.

A release directory holds ``model.pt``, ``dict.txt`` and ``sentencepiece.bpe.model``.
Its ``model.pt`` was written by 2019 fairseq: an argparse ``args`` instead of ``cfg``,
stock ``roberta_base`` / ``roberta_large`` with task ``multilingual_masked_lm``, and
state-dict keys under ``decoder.`` with ``emb_layer_norm``. fairseq's own loaders
already turn ``args`` into a config and rename the keys (``RobertaModel
.upgrade_state_dict_named``); what they cannot know is that the same weights are one of
our ``xlmr_*`` shapes. :func:`use_plugin_architecture` rewrites the model config to the
``xlmr_roberta`` architecture of the same shape, so ``XLMR.from_pretrained`` builds the
plugin's model. Continuing pretraining needs nothing from here: ``fairseq-train
--arch xlmr_base --restore-file RELEASE/model.pt --reset-optimizer ...`` builds the
model from the command line and loads the weights through the same upgrade.
"""
import logging
from contextlib import nullcontext
from dataclasses import astuple
from typing import Any, Dict

from omegaconf import OmegaConf, open_dict

from xlmr_plugin.models.shapes import SHAPES, Shape

logger = logging.getLogger(__name__)


def checkpoint_size(model_cfg: Any) -> Shape:
    """The shape a checkpoint's model config describes, in the terms of ``SHAPES``."""
    return Shape(
        layers=int(model_cfg.encoder_layers),
        width=int(model_cfg.encoder_embed_dim),
        heads=int(model_cfg.encoder_attention_heads),
        ffn=int(model_cfg.encoder_ffn_embed_dim),
        prenorm=bool(getattr(model_cfg, "encoder_normalize_before", False)),
    )


def plugin_architecture(model_cfg: Any) -> str:
    """The ``xlmr_*`` architecture with the checkpoint's layers, width, heads, FFN and norm.

    A shape no architecture has (a checkpoint of stock ``roberta_base`` trained at other
    sizes) takes the first architecture of its norm placement: the arch functions only
    fill in what a config lacks, so the checkpoint's own sizes are the ones built.
    """
    size = checkpoint_size(model_cfg)
    matches = [name for name, known in SHAPES.items() if known == size]
    if matches:
        return matches[0]
    name = next(name for name, known in SHAPES.items() if known.prenorm == size.prenorm)
    logger.info("no xlmr_* architecture has (layers, width, heads, ffn, prenorm) = %s: built as %s with "
                "the checkpoint's sizes", astuple(size), name)
    return name


def use_plugin_architecture(cfg: Dict[str, Any]) -> str:
    """Point ``cfg.model`` (a loaded checkpoint's config) at ``xlmr_roberta``; return the arch.

    A checkpoint already of the plugin is left as it is. fairseq builds a legacy model
    from ``_name`` (falling back to ``arch``), and the arch functions only fill in what
    is missing, so the checkpoint's own sizes and settings stay.
    """
    model_cfg = cfg["model"]
    arch = getattr(model_cfg, "arch", None)
    if arch in SHAPES:
        return arch
    new_arch = plugin_architecture(model_cfg)
    # a Namespace for fairseq's legacy (argparse) models, a DictConfig otherwise
    with open_dict(model_cfg) if OmegaConf.is_config(model_cfg) else nullcontext():
        model_cfg._name = new_arch
        model_cfg.arch = new_arch
        model_cfg.attention_impl = "sdpa"
    logger.info("checkpoint of arch %s loads as xlmr_roberta / %s", arch, new_arch)
    return new_arch
