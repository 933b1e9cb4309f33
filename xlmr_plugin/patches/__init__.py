"""Every change the plugin makes to fairseq or torch at import time, in one place.

Each module fixes one behaviour of fairseq 0.12 under today's torch and names it;
``tests/test_patches.py`` has a test per patch that fails without it.

- ``checkpoint_safe_globals``: torch >= 2.6 loads with ``weights_only=True``, which
  refuses the argparse/omegaconf/numpy objects fairseq pickles into every checkpoint.
- ``bf16_on_gpu``: fairseq's parser turns ``--bf16`` into TPU mode; undone when
  torch_xla is absent, so ``--bf16`` trains on GPUs and CPUs.
- ``clean_exit``: fairseq's prefetch thread can still be inside torch's C++ code when
  the interpreter finalizes (exit 134 after a finished run); it is stopped at exit.
"""
from xlmr_plugin.patches import bf16_on_gpu, checkpoint_safe_globals, clean_exit


def install() -> None:
    checkpoint_safe_globals.allow_fairseq_checkpoints()
    bf16_on_gpu.install()
    clean_exit.install()
