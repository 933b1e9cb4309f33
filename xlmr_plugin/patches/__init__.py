"""Every change the plugin makes to fairseq or torch at import time, in one place.

Each module fixes one behaviour of fairseq 0.12 under today's torch and names it;
``tests/test_patches.py`` (for the checkpoint patches ``tests/test_checkpoint_safety.py``)
has a test per patch that fails without it.

- ``checkpoint_safe_globals``: torch >= 2.6 loads with ``weights_only=True``, which
  refuses the argparse/omegaconf/numpy objects fairseq pickles into every checkpoint.
- ``bf16_training``: fairseq's parser turns ``--bf16`` into TPU mode; undone when
  torch_xla is absent, so ``--bf16`` trains on GPUs and CPUs; on a CPU without bf16
  matrix instructions it trains in fp32 instead, saying why in one line.
- ``clean_exit``: fairseq's prefetch thread can still be inside torch's C++ code when
  the interpreter finalizes (exit 134 after a finished run); it is stopped at exit.
- ``atomic_checkpoint_writes``: fairseq copies each checkpoint to checkpoint_last.pt and
  checkpoint_best.pt in place, so a full disk or a kill mid-copy leaves a truncated one,
  and a failed save leaves its ``.tmp``; now every local checkpoint file is written
  under ``.tmp``, fsynced and renamed, and the ``.tmp`` removed on failure.
- ``resume_from_readable_checkpoint``: an unreadable (or, next to other checkpoints,
  missing) checkpoint_last.pt stops every start or makes fairseq start over silently;
  now the start warns and resumes from the newest readable checkpoint, or stops naming it.
- ``epoch_start_update``: fairseq gives the task no update count when it loads an epoch's
  data and never restores the task state it saves; now the task learns the update each
  epoch starts at (where its data schedules are read) and gets it back on resume.
"""
from xlmr_plugin.patches import (
    atomic_checkpoint_writes,
    bf16_training,
    checkpoint_safe_globals,
    clean_exit,
    epoch_start_update,
    resume_from_readable_checkpoint,
)


def install() -> None:
    checkpoint_safe_globals.allow_fairseq_checkpoints()
    bf16_training.install()
    clean_exit.install()
    atomic_checkpoint_writes.install()
    resume_from_readable_checkpoint.install()
    epoch_start_update.install()
