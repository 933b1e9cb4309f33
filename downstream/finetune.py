"""Fine-tuning a pretrained model with the real ``fairseq-train``: what the XNLI, NER and
QA commands share.

A pretrained model is a checkpoint (a training run's ``checkpoint_best.pt`` or a release
``model.pt``) with its ``dict.txt`` and SentencePiece model. Fine-tuning builds the same
encoder shape from the command line and loads the weights with ``--finetune-from-model``,
which resets optimizer, schedule, meters and data loader as fairseq's RoBERTa GLUE recipe
does with ``--restore-file`` and every ``--reset-*`` flag, but only on the first launch: a
rerun with ``checkpoint_last.pt`` in the save dir resumes the fine-tuning instead of
starting over. RobertaModel's state-dict upgrade adds the new task head.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from fairseq import checkpoint_utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import xlmr_plugin
from xlmr_plugin.interop.release_import import checkpoint_size
from xlmr_plugin.models.shapes import MAX_POSITIONS
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(xlmr_plugin.__file__).resolve().parent


@dataclass(frozen=True)
class Pretrained:
    """A pretrained checkpoint and the vocabulary it was trained with."""

    checkpoint: Path
    dictionary: Path  # dict.txt, without <mask> (the tasks append it)
    sentencepiece: Path
    model_args: tuple[str, ...]  # fairseq-train flags that rebuild the encoder's shape

    @classmethod
    def locate(cls, checkpoint: Path, data_dir: Optional[Path] = None) -> "Pretrained":
        """``dict.txt`` and the SentencePiece model from ``data_dir``, else from beside the
        checkpoint (release layout), else from the data folder the checkpoint was trained on."""
        checkpoint = Path(checkpoint).resolve()
        if not checkpoint.is_file():
            raise FileNotFoundError(f"no pretrained checkpoint {checkpoint}")
        state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint), load_on_all_ranks=True)
        cfg = convert_namespace_to_omegaconf(state["args"]) if state.get("args") is not None else state["cfg"]
        data = Path(data_dir) if data_dir else layout.dictionary_dir(checkpoint.parent, cfg.task)
        if not (data / layout.DICT).is_file():
            raise FileNotFoundError(f"no {layout.DICT} in {data}")
        sentencepiece = layout.find_spm(checkpoint.parent, data, names=layout.RELEASE_SPM_NAMES)
        return cls(checkpoint, data / layout.DICT, sentencepiece, encoder_args(cfg.model))


def encoder_args(model_cfg) -> tuple[str, ...]:
    """``--arch`` and the explicit sizes of a checkpoint's encoder.

    The arch only fills defaults, so explicit sizes also rebuild widths that no ``xlmr_*``
    preset has (a demo model, the capacity and vocabulary studies)."""
    size = checkpoint_size(model_cfg)
    return (
        "--arch", "xlmr_xl" if size.prenorm else "xlmr_base", *size.model_args(),
        "--max-positions", str(int(getattr(model_cfg, "max_positions", MAX_POSITIONS))),
    )


def fairseq_train(data: Path, save_dir: Path, pretrained: Pretrained, args: Sequence[str]) -> Path:
    """Fine-tune ``pretrained`` on ``data`` with the real fairseq-train (or resume that
    fine-tuning from ``save_dir/checkpoint_last.pt``); return checkpoint_best.pt.

    ``args`` are the task's flags (task, criterion, recipe); the log goes to
    ``save_dir/train.log``, and a failure raises with its end.
    """
    save_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", str(PLUGIN_DIR),
        *pretrained.model_args, "--finetune-from-model", str(pretrained.checkpoint),
        "--save-dir", str(save_dir), *map(str, args),
    ]
    log_path = save_dir / "train.log"
    logger.info("fine-tuning: %s (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"fine-tuning failed (exit {proc.returncode}); {log_path} ends with:\n{tail}")
    best = save_dir / "checkpoint_best.pt"
    if not best.is_file():
        raise RuntimeError(f"fairseq-train wrote no {best}; see {log_path}")
    return best


def load_finetuned(checkpoint: Path, data: Path, **overrides):
    """(model in eval mode, task) of a fine-tuned checkpoint, reading its dictionaries from ``data``."""
    [model], _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data), **overrides}
    )
    return model.eval(), task
