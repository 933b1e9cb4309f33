"""Which processor a CPU figure was measured on: the same benchmark gives different ratios on
different processors (bf16 matmuls run ~7x fp32 on AMX, ~3x on AVX512-BF16 alone), and the
2-core machines these benchmarks run on are not all the same kind."""
from pathlib import Path
from typing import Dict

import torch


def processor() -> Dict[str, str]:
    """The processor's model name (from /proc/cpuinfo, where there is one) and its bf16 matrix units."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    units = [name for name, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
             if getattr(torch.cpu, probe, lambda: False)()]
    return {"model": names[0] if names else "unknown", "bf16_matrix_units": ", ".join(units) or "none",
            "capability": torch.backends.cpu.get_cpu_capability()}
