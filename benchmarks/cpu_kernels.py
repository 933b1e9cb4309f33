"""The encoder's CPU kernels against the ones they replace, forward and backward, in the same
process: attention (``attention_kernel.explicit_attention`` against SDPA, with a segment
mask as packed blocks have) at several block lengths in bf16 and fp32, and the layers' GELU
(torch's on bf16 against fairseq's, which converts to fp32 and back).

    python benchmarks/cpu_kernels.py --md benchmarks/results/cpu_kernels_cpu2.md

What ``EXPLICIT_MAX_LENGTH`` rests on: the lengths where the explicit maths is the faster.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from fairseq import utils

from xlmr_plugin.modules.attention_kernel import EXPLICIT_MAX_LENGTH, explicit_attention
from xlmr_plugin.modules.segment_attention import SegmentLayout

HEAD_DIM = 64


def seconds(step: Callable[[], None], repeats: int) -> float:
    """Median seconds of ``step`` over ``repeats`` runs, after two warm-up runs."""
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(fn: Callable, inputs: List[torch.Tensor]) -> Callable[[], None]:
    grad = torch.randn_like(fn(*inputs))
    return lambda: fn(*inputs).backward(grad)


def attention_row(batch: int, heads: int, length: int, dtype: torch.dtype, repeats: int) -> str:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 4, (batch, length), generator=g).sort(dim=1).values  # three segments a row
    mask = SegmentLayout.of(ids, varlen=False).mask
    inputs = [torch.randn(batch, heads, length, HEAD_DIM, generator=g).to(dtype).requires_grad_() for _ in range(3)]
    sdpa = seconds(forward_backward(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), inputs),
                   repeats)
    explicit = seconds(forward_backward(lambda q, k, v: explicit_attention(q, k, v, mask), inputs), repeats)
    chosen = "explicit" if dtype == torch.bfloat16 and length <= EXPLICIT_MAX_LENGTH else "sdpa"
    return (f"| attention {batch} x {heads} x {length} x {HEAD_DIM} | {str(dtype).split('.')[-1]} | "
            f"{sdpa * 1e3:.1f} | {explicit * 1e3:.1f} | {sdpa / explicit:.2f}x | {chosen} |")


def gelu_row(repeats: int) -> str:
    x = torch.randn(128, 32, 1024).bfloat16().requires_grad_()
    theirs = seconds(forward_backward(utils.get_activation_fn("gelu"), [x]), repeats)
    ours = seconds(forward_backward(F.gelu, [x]), repeats)
    return f"| GELU 128 x 32 x 1024 | bfloat16 | {theirs * 1e3:.1f} | {ours * 1e3:.1f} | {theirs / ours:.2f}x | torch's |"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--md", type=Path, help="also write the table here, with the command")
    args = parser.parse_args(argv)
    rows = ["| kernel (B x H x T x D) | dtype | SDPA / fairseq's ms | explicit / torch's ms | speed-up | runs |",
            "| --- | --- | --- | --- | --- | --- |"]
    for dtype in (torch.bfloat16, torch.float32):
        for batch, heads, length in ((32, 4, 128), (16, 4, 256), (8, 4, 512), (8, 12, 512)):
            rows.append(attention_row(batch, heads, length, dtype, args.repeats))
            print(rows[-1], flush=True)
    rows.append(gelu_row(args.repeats))
    print(rows[-1])
    text = "\n".join(rows) + (f"\n\nforward + backward, median of {args.repeats}, {torch.get_num_threads()} threads, "
                              f"torch {torch.__version__}.\n")
    if args.md:
        command = "python benchmarks/cpu_kernels.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.md.write_text(f"Command: `{command}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
