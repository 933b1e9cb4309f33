"""Make ``fairseq-train --bf16`` train in bf16 on GPUs and CPUs, and in fp32 on a CPU whose
matrix units have no bf16.

fairseq's argument parser turns ``--bf16`` into ``--tpu`` (bf16 once meant TPU), so
training then fails importing torch_xla. fairseq-hydra-train has no such rule. The plugin
is imported while the arguments are parsed, before the CLI hands its config to
``distributed_utils.call_main``; wrapping that function lets us undo the implied TPU mode,
and choose fp32 on a CPU without bf16 matrix instructions, before any device, trainer or
process group is set up.

On CPU, bf16 pays only with bf16 matrix instructions (AMX or AVX512-BF16, through
oneDNN): there a bf16 matmul is several times an fp32 one, elsewhere it is emulated and
several times slower. ``--bf16`` keeps fairseq's fp32 master weights (``FP16Optimizer``),
as on GPUs.
"""
import functools
import importlib.util
import logging
import os
from argparse import Namespace
from typing import Optional

import torch
from fairseq.distributed import utils as distributed_utils
from omegaconf import DictConfig

logger = logging.getLogger(__name__)

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, or its old name DNNL_MAX_CPU_ISA) below the first
# level with bf16 dot products (AVX512_CORE_BF16): with one of these, oneDNN emulates bf16
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def torch_xla_available() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def cpu_bf16_missing() -> Optional[str]:
    """Why bf16 matmuls would be slow on this CPU, or None when it has bf16 matrix units
    that oneDNN may use. The one place that decides whether CPU training takes bf16."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    cpu = torch.cpu
    has_amx = getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    has_avx512_bf16 = getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    if not (has_amx or has_avx512_bf16):
        return (f"this processor has no bf16 matrix instructions (neither AMX nor AVX512-BF16; torch's CPU "
                f"capability: {torch.backends.cpu.get_cpu_capability()})")
    if cap and cap.upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN off the processor's bf16 instructions"
    return None


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
    _set_everywhere(cfg, "tpu", False)


def cpu_bf16_or_fp32(cfg) -> None:
    """On CPU, --bf16 (or --memory-efficient-bf16) becomes fp32 where ``cpu_bf16_missing``
    says why, in one logged line: the same run, at fp32 speed instead of emulated bf16's."""
    common = cfg.common
    if not (common.cpu and (common.bf16 or common.memory_efficient_bf16)):
        return
    reason = cpu_bf16_missing()
    if reason is None:
        return
    logger.warning("--bf16 on CPU: training in fp32 instead, because %s", reason)
    for name in ("bf16", "memory_efficient_bf16"):
        _set_everywhere(cfg, name, False)


def _set_everywhere(cfg, name: str, value) -> None:
    """Set ``name`` in every section of ``cfg`` that holds a resolved copy of it."""
    for section_name in cfg:
        section = cfg[section_name]
        if isinstance(section, (DictConfig, Namespace)) and getattr(section, name, None) not in (None, value):
            setattr(section, name, value)


def install() -> None:
    """Wrap fairseq's ``call_main`` once (re-importing the plugin must not stack wrappers)."""
    original = distributed_utils.call_main
    if getattr(original, "_xlmr_bf16_fix", False):
        return

    @functools.wraps(original)
    def call_main(cfg, main, **kwargs):
        bf16_without_tpu(cfg)
        cpu_bf16_or_fp32(cfg)
        return original(cfg, main, **kwargs)

    call_main._xlmr_bf16_fix = True
    distributed_utils.call_main = call_main
