"""Shared helpers of the probing tests: one small trained model per session, CLIs fed
through stdin, and a directory in the official XLM-R release layout built from it."""
import os
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from fairseq import options

from plugin_utils import REPO, TINY, fairseq_cli, small_dest

LANGS = ["de", "el", "en", "fr", "ja", "ru"]


def probe_model(xlmr_data: Path, tmp_path_factory) -> Tuple[Path, Path]:
    """(DEST, checkpoint) of a tiny model trained 60 updates on 300 lines per language.

    Trained once per session: every probing test module asks for the same files.
    """
    root = tmp_path_factory.getbasetemp() / "probe"
    ckpt = root / "ckpt" / "checkpoint_last.pt"
    dest = root / "data"
    if not ckpt.exists():
        small_dest(xlmr_data, dest, {lang: 300 for lang in LANGS})
        fairseq_cli("fairseq-train", [
            dest, *TINY, "--batch-size", "16", "--max-update", "60", "--disable-validation",
            "--save-dir", ckpt.parent,
        ])
    return dest, ckpt


def run_tool(tool: str, args: Sequence, stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    """A console script of this environment, with ``stdin`` as its input."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([str(Path(sys.executable).with_name(tool)), *map(str, args)], input=stdin,
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"{tool} failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc


def make_release_dir(ckpt: Path, dest: Path, out: Path) -> Path:
    """``out`` laid out as the official XLM-R download: model.pt, dict.txt, sentencepiece.bpe.model.

    model.pt is written the way 2019 fairseq wrote XLM-R: argparse ``args`` only (stock
    ``roberta_base`` with the tiny sizes, task ``multilingual_masked_lm``), weights under
    ``decoder.`` with ``emb_layer_norm``, no optimizer state.
    """
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(dest / "dict.txt", out / "dict.txt")
    shutil.copy(dest / "spm.model", out / "sentencepiece.bpe.model")
    trained = torch.load(ckpt)
    weights = {
        "decoder" + key[len("encoder"):].replace(".layernorm_embedding.", ".emb_layer_norm."): value
        for key, value in trained["model"].items() if not key.endswith(".version")
    }
    torch.save({
        "args": release_args(dest), "model": weights,
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": None}, "num_updates": 60}],
        "extra_state": {"epoch": 1, "train_iterator": {"epoch": 1}, "val_loss": None},
    }, out / "model.pt")
    return out


def release_args(dest: Path) -> Namespace:
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(dest), "--task", "multilingual_masked_lm", "--arch", "roberta_base", "--criterion", "masked_lm",
        "--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-attention-heads", "4",
        "--encoder-ffn-embed-dim", "256", "--optimizer", "adam", "--lr-scheduler", "polynomial_decay", "--total-num-update", "125000",
        "--bpe", "sentencepiece", "--sentencepiece-model", str(dest / "spm.model"),
    ])
    args.max_positions = 512  # set by roberta's build_model in training, saved as such
    return args
