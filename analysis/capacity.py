"""The widths the capacity and vocabulary studies derive from the parameter count.

The paper's two capacity experiments move parameters around: the capacity study
widens the model as languages are added (768 -> 960 -> 1152 for 7 -> 30 -> 100
languages), the vocabulary study grows the vocabulary from 32k to 256k pieces while
*keeping* the parameter count, so the embedding matrix takes width from the
Transformer. Both start from an ``xlmr_*`` shape and its count (``Shape.parameters``,
xlmr_plugin/models/shapes.py).
"""
from __future__ import annotations

import math
from dataclasses import replace

from xlmr_plugin.models.shapes import MAX_POSITIONS, Shape


def scaled_shape(base: Shape, step: int, growth: float = 0.25) -> Shape:
    """The capacity study's shape after `step` additions of languages: width grows by
    `growth` of the base width per step, in whole heads of the base head size, FFN at the
    base's ratio; 768 -> 960 -> 1152 with 64-dim heads, as the paper's xlmr_base_960/1152."""
    head_dim = base.width // base.heads
    heads = max(1, round(base.width * (1 + growth * step) / head_dim))
    width = heads * head_dim
    return replace(base, width=width, heads=heads, ffn=round(width * base.ffn / base.width))


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
    fixed = replace(base, width=width, ffn=0).parameters(vocab)
    per_ffn_unit = base.layers * (2 * width + 1)
    ffn = max(1, round((target - fixed) / per_ffn_unit))
    shape = replace(base, width=width, ffn=ffn)
    got = shape.parameters(vocab)
    if abs(got - target) > tolerance * target:
        raise ValueError(f"no shape with {vocab} embeddings comes within {tolerance:.0%} of {target:,} "
                         f"parameters (nearest: width {width}, FFN {ffn}, {got:,})")
    return shape
