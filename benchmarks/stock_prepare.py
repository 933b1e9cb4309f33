"""The stock two-step path that `xlmr-prepare` replaces, kept to check that our
shards are byte-identical to it and to benchmark against it:

    spm_encode --model spm.model --output_format piece < split > split.spm
    fairseq-preprocess --only-source --srcdict dict.txt --trainpref ... --dataset-impl mmap
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import sentencepiece as spm


def spm_encode(model: Path, src: Path, out: Path, binary: Optional[str] = None) -> None:
    """Each line encoded to pieces joined by spaces, empty lines kept.

    With `binary` (Debian's C++ `spm_encode`) the library doing the encoding is
    that package's, whose version may break ties between equal-scoring
    segmentations differently from the Python package; without it this is fairseq's
    `scripts/spm_encode.py --keep-empty` on the installed sentencepiece."""
    if binary:
        with open(src, "rb") as fin, open(out, "wb") as fout:
            subprocess.run([binary, f"--model={model}", "--output_format=piece"], stdin=fin, stdout=fout, check=True)
        return
    sp = spm.SentencePieceProcessor(model_file=str(model))
    with open(src, encoding="utf-8") as fin, open(out, "w", encoding="utf-8") as fout:
        for line in fin:
            fout.write(" ".join(sp.encode(line.rstrip("\n"), out_type=str)) + "\n")


def fairseq_preprocess(dict_path: Path, train: Path, valid: Path, destdir: Path, workers: int = 1) -> None:
    """Binarize pre-encoded text with fairseq's own CLI into destdir/{train,valid}.{bin,idx}."""
    subprocess.run(
        [
            sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", str(dict_path),
            "--trainpref", str(train), "--validpref", str(valid), "--destdir", str(destdir),
            "--dataset-impl", "mmap", "--workers", str(workers),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def two_step(
    model: Path, dict_path: Path, train_txt: Path, valid_txt: Path, destdir: Path,
    workers: int = 1, binary: Optional[str] = None,
) -> None:
    """spm_encode both splits, then fairseq-preprocess them, as a user's shell script would."""
    destdir.mkdir(parents=True, exist_ok=True)
    encoded = []
    for split in (train_txt, valid_txt):
        out = destdir / (split.name + ".spm")
        spm_encode(model, split, out, binary)
        encoded.append(out)
    fairseq_preprocess(dict_path, encoded[0], encoded[1], destdir, workers)


def spm_encode_binary() -> Optional[str]:
    """Debian's `spm_encode`, when installed (package `sentencepiece`)."""
    return shutil.which("spm_encode")
