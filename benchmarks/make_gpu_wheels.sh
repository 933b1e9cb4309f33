#!/usr/bin/env bash
# Make the carry folder of benchmarks/gpu_check.sh: the cp312 manylinux wheels of what the lent
# GPU machine lacks (Python 3.12, torch, numpy, transformers, sentencepiece, triton already
# there; no registry reachable from it). Run here, where pip reaches PyPI, from the repository
# root; the folder (.whl, git-ignored) then travels as the device call's `carry`, about 21 MiB.
#   bash benchmarks/make_gpu_wheels.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
# fairseq-fixed's Cython modules are numpy-2 builds; omegaconf 2.3 needs antlr4 4.9.x exactly
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d "$DEST" fairseq-fixed==0.12.3.1 omegaconf==2.3.0 hydra-core==1.3.2 bitarray==3.12.3 submitit==1.5.4 \
  cloudpickle==3.1.3
# antlr4-python3-runtime 4.9.3 exists only as a source package: build its (pure Python) wheel
"$PYTHON" -m pip wheel -q --no-deps -w "$DEST" antlr4-python3-runtime==4.9.3
du -sh "$DEST"
ls "$DEST"
