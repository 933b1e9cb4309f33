"""Parameter counts of the xlmr_sdpa encoder, and the widths the capacity and
vocabulary studies derive from them.

The paper's two capacity experiments move parameters around: the capacity study
widens the model as languages are added (768 -> 960 -> 1152 for 7 -> 30 -> 100
languages), the vocabulary study grows the vocabulary from 32k to 256k pieces while
*keeping* the parameter count, so the embedding matrix takes width from the
Transformer. Both need the count as a function of the shape, without building a
250k x 1024 model to find it; a test checks the formula against fairseq's own count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

MAX_POSITIONS = 512  # xlmr_sdpa's learned positions (+2 rows: padding offset)


@dataclass(frozen=True)
class Shape:
    """The encoder dimensions that set its parameter count."""

    layers: int
    width: int
    heads: int
    ffn: int

    def check(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of the {self.heads} attention heads")


def dictionary_size(data: Path) -> int:
    """Embedding rows of a prepared DEST: <s> <pad> </s> <unk>, dict.txt's pieces, <mask>."""
    with open(Path(data) / "dict.txt", encoding="utf-8") as f:
        return 4 + sum(1 for line in f if line.strip()) + 1


def encoder_parameters(shape: Shape, vocab: int) -> int:
    """Trainable parameters of RobertaModel (post- or pre-norm, tied LM head) with `vocab`
    embeddings: the count fairseq logs as `num. shared model params`."""
    d, f = shape.width, shape.ffn
    embeddings = vocab * d + (MAX_POSITIONS + 2) * d + 2 * d  # tokens, positions, one LayerNorm
    # q, k, v, out projections with biases; FFN in and out; two LayerNorms
    layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    lm_head = d * d + d + 2 * d + vocab  # dense, LayerNorm, output bias (weight tied to embeddings)
    return embeddings + shape.layers * layer + lm_head


def scaled_shape(base: Shape, step: int, growth: float = 0.25) -> Shape:
    """The capacity study's shape after `step` additions of languages: width grows by
    `growth` of the base width per step, in whole heads of the base head size, FFN at the
    base's ratio; 768 -> 960 -> 1152 with 64-dim heads, as the paper's xlmr_base_960/1152."""
    head_dim = base.width // base.heads
    heads = max(1, round(base.width * (1 + growth * step) / head_dim))
    width = heads * head_dim
    return Shape(base.layers, width, heads, round(width * base.ffn / base.width))


def shape_for_parameters(base: Shape, vocab: int, target: int, tolerance: float = 0.02) -> Shape:
    """The shape with `vocab` embeddings whose parameter count is nearest `target`.

    The width (a multiple of the base's heads, FFN at the base's ratio) is the root of the
    count's quadratic in the width; the FFN size then takes up what whole heads leave,
    since at toy widths one head's step moves the count by several percent.
    """
    ratio = base.ffn / base.width
    # count(d) = a d^2 + b d + c with f = ratio * d
    a = base.layers * (4 + 2 * ratio) + 1
    b = vocab + MAX_POSITIONS + 2 + 2 + base.layers * (4 + ratio + 1 + 4) + 3
    c = vocab - target
    if c >= 0:
        raise ValueError(f"a vocabulary of {vocab} embeddings alone holds more than {target} parameters")
    width_real = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    width = max(base.heads, round(width_real / base.heads) * base.heads)
    fixed = encoder_parameters(Shape(base.layers, width, base.heads, 0), vocab)
    per_ffn_unit = base.layers * (2 * width + 1)
    ffn = max(1, round((target - fixed) / per_ffn_unit))
    shape = Shape(base.layers, width, base.heads, ffn)
    got = encoder_parameters(shape, vocab)
    if abs(got - target) > tolerance * target:
        raise ValueError(f"no shape with {vocab} embeddings comes within {tolerance:.0%} of {target:,} "
                         f"parameters (nearest: width {width}, FFN {ffn}, {got:,})")
    return shape
