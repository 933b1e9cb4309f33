"""Every change the plugin makes to fairseq or torch at import time, in one place.

Each module fixes one behaviour of fairseq 0.12 under today's torch and names it;
``tests/test_patches.py`` (for the checkpoint patches ``tests/test_checkpoint_safety.py``)
has a test per patch that fails without it.

- ``checkpoint_safe_globals``: torch >= 2.6 loads with ``weights_only=True``, which
  refuses the argparse/omegaconf/numpy objects fairseq pickles into every checkpoint.
- ``bf16_on_gpu``: fairseq's parser turns ``--bf16`` into TPU mode; undone when
  torch_xla is absent, so ``--bf16`` trains on GPUs and CPUs.
- ``clean_exit``: fairseq's prefetch thread can still be inside torch's C++ code when
  the interpreter finalizes (exit 134 after a finished run); it is stopped at exit.
- ``atomic_checkpoint_writes``: fairseq copies each checkpoint to checkpoint_last.pt and
  checkpoint_best.pt in place, so a full disk or a kill mid-copy leaves a truncated one,
  and a failed save leaves its ``.tmp``; now every local checkpoint file is written
  under ``.tmp``, fsynced and renamed, and the ``.tmp`` removed on failure.
- ``resume_from_readable_checkpoint``: an unreadable (or, next to other checkpoints,
  missing) checkpoint_last.pt stops every start or makes fairseq start over silently;
  now the start warns and resumes from the newest readable checkpoint, or stops naming it.
"""
from xlmr_plugin.patches import (
    atomic_checkpoint_writes,
    bf16_on_gpu,
    checkpoint_safe_globals,
    clean_exit,
    resume_from_readable_checkpoint,
)


def install() -> None:
    checkpoint_safe_globals.allow_fairseq_checkpoints()
    bf16_on_gpu.install()
    clean_exit.install()
    atomic_checkpoint_writes.install()
    resume_from_readable_checkpoint.install()
