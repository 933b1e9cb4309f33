"""Make ``fairseq-train --bf16`` train on GPUs.

fairseq's argument parser turns ``--bf16`` into ``--tpu`` (bf16 once meant TPU), so on
a GPU machine training then fails importing torch_xla. fairseq-hydra-train has no such
rule. The plugin is imported while the arguments are parsed, before the CLI hands its
config to ``distributed_utils.call_main``; wrapping that function lets us undo the
implied TPU mode before any device, trainer or process group is set up.
"""
import functools
import importlib.util
import logging
from argparse import Namespace

from fairseq.distributed import utils as distributed_utils
from omegaconf import DictConfig

logger = logging.getLogger(__name__)


def torch_xla_available() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def bf16_without_tpu(cfg) -> None:
    """With --bf16 and no torch_xla installed, TPU mode can only be the implied one: drop it.

    The parsed config holds resolved copies of ``tpu`` in several sections
    (distributed_training, optimizer, criterion, the model's Namespace), so all go.
    """
    common = cfg.common
    if not (common.bf16 and common.tpu) or torch_xla_available():
        return
    logger.info("--bf16 without torch_xla: training in bf16 on %s, not on TPU",
                "CPU" if common.cpu else "GPU")
    for name in cfg:
        section = cfg[name]
        if isinstance(section, (DictConfig, Namespace)) and getattr(section, "tpu", False):
            setattr(section, "tpu", False)


def install() -> None:
    """Wrap fairseq's ``call_main`` once (re-importing the plugin must not stack wrappers)."""
    original = distributed_utils.call_main
    if getattr(original, "_xlmr_bf16_fix", False):
        return

    @functools.wraps(original)
    def call_main(cfg, main, **kwargs):
        bf16_without_tpu(cfg)
        return original(cfg, main, **kwargs)

    call_main._xlmr_bf16_fix = True
    distributed_utils.call_main = call_main
