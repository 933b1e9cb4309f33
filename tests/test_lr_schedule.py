"""The ``warmup_stable_decay`` lr scheduler, built the way fairseq-train builds it.

fairseq's ``tri_stage`` has warmup, hold and decay phases but decays only exponentially to
``final_lr_scale`` x lr; this one decays linearly, as a cosine or as 1-sqrt. The lr of a real
run is checked in tests/test_schedules.py; bad settings stop the start naming the flag.
"""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.optim import build_optimizer
from fairseq.optim.lr_scheduler import build_lr_scheduler

from plugin_utils import PLUGIN, TINY, small_dest

PEAK, END, WARMUP, TOTAL, FRACTION = 1e-3, 1e-5, 100, 1000, 0.3


def scheduler(*extra: str):
    """The scheduler fairseq-train would build from these arguments, over a real Adam."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "DATA", "--user-dir", str(PLUGIN), "--arch", "xlmr_tiny", "--optimizer", "adam", "--lr", str(PEAK),
        "--lr-scheduler", "warmup_stable_decay", "--max-update", str(TOTAL), *extra])
    cfg = convert_namespace_to_omegaconf(args)
    optimizer = build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(2))])
    return build_lr_scheduler(cfg.lr_scheduler, optimizer), optimizer


def by_hand(u: int, shape: str) -> float:
    """lr at update u, from the definition: linear warmup, constant, decay over the last FRACTION."""
    start = TOTAL - FRACTION * TOTAL
    if u < WARMUP:
        return PEAK * u / WARMUP
    if u < start:
        return PEAK
    t = min(1.0, (u - start) / (TOTAL - start))
    factor = {"linear": 1 - t, "cosine": (1 + math.cos(math.pi * t)) / 2, "1-sqrt": 1 - math.sqrt(t)}[shape]
    return END + (PEAK - END) * factor


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_the_lr_at_chosen_updates_is_the_formula(shape):
    lr_scheduler, optimizer = scheduler("--warmup-updates", str(WARMUP), "--decay-fraction", str(FRACTION),
                                        "--decay-shape", shape, "--end-learning-rate", str(END))
    assert optimizer.get_lr() == 0.0  # before the first update, as polynomial_decay
    for u in (1, 50, 99, 100, 400, 699, 700, 701, 775, 850, 999, 1000, 1500):
        assert lr_scheduler.step_update(u) == pytest.approx(by_hand(u, shape), rel=1e-12), u
    # a quarter into the decay the shapes part: 1 - t, (1 + cos(pi t)) / 2, 1 - sqrt(t) of the range
    quarter = {"linear": 0.75, "cosine": (1 + math.sqrt(0.5)) / 2, "1-sqrt": 0.5}[shape]
    assert lr_scheduler.step_update(775) == pytest.approx(END + (PEAK - END) * quarter, rel=1e-12)


def test_total_num_update_overrides_max_update():
    lr_scheduler, _ = scheduler("--total-num-update", "500", "--decay-fraction", "0.5")
    assert lr_scheduler.step_update(249) == PEAK and lr_scheduler.step_update(375) == pytest.approx(PEAK / 2)
    assert lr_scheduler.step_update(500) == 0.0


@pytest.mark.parametrize("extra,message", [
    (["--decay-fraction", "0"], "--decay-fraction must lie in (0, 1]"),
    (["--warmup-updates", "800", "--decay-fraction", "0.3"], "--warmup-updates 800 must lie in [0, 700]"),
    (["--end-learning-rate", "0.01"], "--end-learning-rate must lie in [0, --lr 0.001]"),
])
def test_bad_settings_stop_the_start_naming_the_flag(xlmr_data, tmp_path, extra, message):
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None})
    cmd = [str(Path(sys.executable).with_name("fairseq-train")), str(data), *map(str, TINY), "--max-tokens", "1024",
           "--lr-scheduler", "warmup_stable_decay", "--warmup-updates", "0", "--total-num-update", str(TOTAL),
           "--max-update", "2", "--save-dir", str(tmp_path / "ckpt"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in log and "train_inner" not in log, log[-3000:]
