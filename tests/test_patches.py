"""Each fairseq patch of xlmr_plugin/patches pins the behaviour it fixes: every test
checks that the problem exists without the patch and is gone with it."""
from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils

from plugin_utils import REPO


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_fairseq_checkpoints_load_with_the_safe_unpickler(tmp_path: Path) -> None:
    """What fairseq pickles into a checkpoint: an argparse config, an omegaconf one, numpy scalars."""
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(
        options.get_training_parser(), ["DATA", "--task", "masked_lm", "--arch", "roberta_base"]))
    path = tmp_path / "checkpoint.pt"
    torch.save({"args": argparse.Namespace(lr=[1e-4]), "cfg": cfg, "meter": np.float64(1.5),
                "model": {"w": torch.ones(2)}}, path)

    without = python(f"import torch; torch.load({str(path)!r})")
    assert without.returncode != 0 and "weights_only" in without.stderr

    import xlmr_plugin  # noqa: F401  (installs the patch)

    state = torch.load(path)
    assert state["cfg"].model.arch == "roberta_base" and state["meter"] == 1.5


def test_bf16_trains_without_tpu_mode() -> None:
    """fairseq's parser turns --bf16 into --tpu; the call into training sees it undone."""
    import xlmr_plugin  # noqa: F401  (wraps call_main)

    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["DATA", "--task", "masked_lm", "--arch", "roberta_base", "--bf16", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    assert cfg.common.tpu, "fairseq no longer implies --tpu from --bf16: the patch can go"
    seen = {}
    distributed_utils.call_main(cfg, lambda cfg, **kwargs: seen.update(tpu=cfg.common.tpu, bf16=cfg.common.bf16))
    assert seen == {"tpu": False, "bf16": True}


PREFETCH_AT_EXIT = """
    import atexit, sys, threading, time

    def report():  # registered first, so it runs after the plugin's own exit handler
        from fairseq.data.iterators import BackgroundConsumer
        alive = [t for t in threading.enumerate() if isinstance(t, BackgroundConsumer) and t.is_alive()]
        print("prefetch threads alive at exit:", len(alive), flush=True)

    atexit.register(report)
    {import_line}
    from fairseq.data.iterators import BufferedIterator

    class Endless:
        def __len__(self):
            return 10**6

        def __iter__(self):
            i = 0
            while True:
                time.sleep(0.01)
                yield i
                i += 1

    batches = BufferedIterator(2, Endless())
    next(batches)  # training stopped here (--max-update) with the prefetcher still going
"""


def test_prefetch_thread_is_stopped_at_exit() -> None:
    plain = python(PREFETCH_AT_EXIT.format(import_line="import fairseq"))
    assert "prefetch threads alive at exit: 1" in plain.stdout, plain.stdout + plain.stderr
    patched = python(PREFETCH_AT_EXIT.format(import_line="import xlmr_plugin"))
    assert patched.returncode == 0, patched.stderr[-2000:]
    assert "prefetch threads alive at exit: 0" in patched.stdout, patched.stdout + patched.stderr
