"""`xlmr-export-hf CKPT OUT` and `xlmr-import-hf HF_DIR OUT`: the commands around
`hf_conversion`, writing each directory under a temporary name first and refusing an
OUT that holds files they do not write (`publish_directory`)."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from xlmr_plugin.interop.hf_conversion import (
    ConversionError,
    Sizes,
    check_xlmr_dictionary,
    fairseq_to_hf,
    hf_to_fairseq,
    sizes,
)
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.atomic import ForeignFilesError, publish_directory, staging_directory

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).resolve().parents[1]
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _vocabulary(data: Path) -> tuple[Path, Path]:
    """The SentencePiece model and dict.txt of a data folder (a DEST: its spm.model first)."""
    needs = f"{data}: needs {layout.DICT} and one of {', '.join(layout.SPM_NAMES)}"
    if not (data / layout.DICT).exists():
        raise ConversionError(needs)
    try:
        return layout.find_spm(data), data / layout.DICT
    except FileNotFoundError:
        raise ConversionError(needs) from None


def _transformers():
    """transformers imports torchaudio whenever it is installed; fairseq-fixed pulls one
    that may not load against the installed torch (the Makefile removes it)."""
    try:
        import transformers
        from transformers import XLMRobertaForMaskedLM  # noqa: F401  (imports torchaudio if present)
    except ImportError as e:
        raise ConversionError(f"needs transformers: pip install -e .[hf] ({e})") from None
    except OSError as e:
        raise ConversionError(f"torchaudio is installed but does not load ({e}); pip uninstall torchaudio") from None
    return transformers


def export_hf(checkpoint: Path, out: Path, data: Optional[Path] = None) -> None:
    """A plugin (or stock RobertaModel) checkpoint -> an XLMRobertaForMaskedLM directory."""
    import xlmr_plugin  # noqa: F401  lets torch >= 2.6 unpickle the checkpoint
    from fairseq import checkpoint_utils

    transformers = _transformers()
    XLMRobertaConfig, XLMRobertaForMaskedLM = transformers.XLMRobertaConfig, transformers.XLMRobertaForMaskedLM

    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    model_cfg, task_cfg = state["cfg"]["model"], state["cfg"]["task"]
    spm_model, dict_path = _vocabulary(Path(data) if data else Path(task_cfg.data))
    found = sizes(state["model"], heads=model_cfg.encoder_attention_heads)
    check_xlmr_dictionary(spm_model, dict_path, found.vocab)
    config = XLMRobertaConfig(
        vocab_size=found.vocab, hidden_size=found.shape.width, num_hidden_layers=found.shape.layers,
        num_attention_heads=found.shape.heads, intermediate_size=found.shape.ffn,
        max_position_embeddings=found.positions, type_vocab_size=1, layer_norm_eps=1e-5,
        hidden_act=model_cfg.activation_fn, hidden_dropout_prob=model_cfg.dropout,
        attention_probs_dropout_prob=model_cfg.attention_dropout,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, architectures=["XLMRobertaForMaskedLM"],
    )
    model = XLMRobertaForMaskedLM(config)
    missing, unexpected = model.load_state_dict(fairseq_to_hf(state["model"]), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConversionError(f"{checkpoint}: missing {missing}, unexpected {unexpected} in the HF model")
    tmp = staging_directory(out)
    model.save_pretrained(tmp)
    shutil.copyfile(spm_model, tmp / layout.RELEASE_SPM_MODEL)
    shutil.copyfile(dict_path, tmp / layout.DICT)  # keeps the piece counts for the way back
    transformers.XLMRobertaTokenizer.from_pretrained(tmp).save_pretrained(tmp)
    publish_directory(tmp, out)


def _release_cfg(found: Sizes, config) -> object:
    """The training config a release checkpoint carries: the plugin's task and model."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [
        ".", "--user-dir", str(PLUGIN_DIR), "--task", "xlmr_mlm", "--criterion", "xlmr_masked_lm",
        "--arch", "xlmr_base", *found.shape.model_args(), "--max-positions", str(found.positions - 2),
        "--activation-fn", config.hidden_act, "--dropout", str(config.hidden_dropout_prob),
        "--attention-dropout", str(config.attention_probs_dropout_prob),
    ]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))


def _check_hf_directory(hf_dir: Path) -> None:
    """Fail on what is missing before transformers builds a model: without config.json it
    builds one of the default (base) size first and fails only on loading the weights."""
    if not hf_dir.is_dir():
        raise ConversionError(f"{hf_dir}: no such directory")
    for name in (HF_CONFIG, layout.RELEASE_SPM_MODEL):
        if not (hf_dir / name).is_file():
            raise ConversionError(f"{hf_dir}: no {name} (an XLM-R directory of Hugging Face ships one)")
    if not any((hf_dir / name).is_file() for name in HF_WEIGHTS):
        raise ConversionError(f"{hf_dir}: no weights (one of {', '.join(HF_WEIGHTS)})")
    model_type = json.loads((hf_dir / HF_CONFIG).read_text(encoding="utf-8")).get("model_type")
    if model_type != "xlm-roberta":
        raise ConversionError(f"{hf_dir / HF_CONFIG}: model_type {model_type}, expected xlm-roberta")


def import_hf(hf_dir: Path, out: Path) -> None:
    """An XLMRobertaForMaskedLM directory -> the XLM-R release layout
    (model.pt, dict.txt, sentencepiece.bpe.model) for `--restore-file` and probing."""
    _check_hf_directory(hf_dir)
    XLMRobertaForMaskedLM = _transformers().XLMRobertaForMaskedLM
    spm_model = hf_dir / layout.RELEASE_SPM_MODEL
    model = XLMRobertaForMaskedLM.from_pretrained(hf_dir)
    weights = hf_to_fairseq({k: v.detach().clone() for k, v in model.state_dict().items()})
    found = sizes(weights, heads=model.config.num_attention_heads)
    tmp = staging_directory(out)
    shutil.copyfile(spm_model, tmp / layout.RELEASE_SPM_MODEL)
    if (hf_dir / layout.DICT).exists():
        shutil.copyfile(hf_dir / layout.DICT, tmp / layout.DICT)
    else:  # HF keeps no piece counts: all 1, so --freq-weighted-replacement draws uniformly
        layout.write_dictionary(spm_model, np.ones(found.vocab, dtype=np.int64), tmp / layout.DICT)
    check_xlmr_dictionary(tmp / layout.RELEASE_SPM_MODEL, tmp / layout.DICT, found.vocab)
    checkpoint = {
        "cfg": _release_cfg(found, model.config),
        "model": weights,
        "optimizer_history": [{"criterion_name": "XLMRMaskedLMLoss", "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "extra_state": {},
        "last_optimizer_state": None,
    }
    torch.save(checkpoint, tmp / layout.RELEASE_MODEL)
    publish_directory(tmp, out)


def _run(fn, argv: Optional[list[str]], description: str, src: str, dest: str, data: bool) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src", type=Path, help=src)
    parser.add_argument("out", type=Path, help=dest)
    if data:
        parser.add_argument("--data", type=Path, help="directory with dict.txt and spm.model (default: the checkpoint's task data)")
    args = parser.parse_args(argv)
    try:
        fn(args.src, args.out, *([args.data] if data else []))
    except (ConversionError, ForeignFilesError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def main_export(argv: Optional[list[str]] = None) -> int:
    return _run(export_hf, argv, "fairseq XLM-R checkpoint -> Hugging Face XLMRobertaForMaskedLM directory",
                "checkpoint (.pt)", "output directory", data=True)


def main_import(argv: Optional[list[str]] = None) -> int:
    return _run(import_hf, argv, "Hugging Face XLM-R directory -> XLM-R release layout (model.pt, dict.txt, "
                "sentencepiece.bpe.model)", "Hugging Face directory", "output directory", data=False)
