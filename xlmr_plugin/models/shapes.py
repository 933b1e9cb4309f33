"""The encoder shapes of XLM-R and their parameter counts: one table for every consumer.

The architectures (``--arch xlmr_base`` ...), the release importer, the capacity and
vocabulary studies, the fine-tuning launcher and the benchmarks all read ``SHAPES``;
``Shape.parameters`` gives the count without building a 250k x 1024 model (a test
checks it against fairseq's own count).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

MAX_POSITIONS = 512  # learned positions, as released XLM-R (+2 rows: fairseq's padding offset)


@dataclass(frozen=True)
class Shape:
    """What sets an encoder's size: post-norm (XLM-R) or pre-norm (XL, XXL)."""

    layers: int
    width: int
    heads: int
    ffn: int
    prenorm: bool = False

    def check(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of the {self.heads} attention heads")

    def parameters(self, vocab: int, max_positions: int = MAX_POSITIONS) -> int:
        """Trainable parameters of RobertaModel with ``vocab`` embeddings and a tied LM head:
        the count fairseq logs as ``num. shared model params`` (pre-norm swaps the embedding
        LayerNorm for a final one, the same count)."""
        d, f = self.width, self.ffn
        embeddings = vocab * d + (max_positions + 2) * d + 2 * d  # tokens, positions, one LayerNorm
        # q, k, v, out projections with biases; FFN in and out; two LayerNorms
        layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
        lm_head = d * d + d + 2 * d + vocab  # dense, LayerNorm, output bias (weight tied to embeddings)
        return embeddings + self.layers * layer + lm_head

    def model_args(self) -> List[str]:
        """fairseq-train flags that set this shape whatever ``--arch`` says."""
        return ["--encoder-layers", str(self.layers), "--encoder-embed-dim", str(self.width),
                "--encoder-attention-heads", str(self.heads), "--encoder-ffn-embed-dim", str(self.ffn)]


# Parameter counts with XLM-R's 250,002-symbol dictionary.
SHAPES: Dict[str, Shape] = {
    "xlmr_base": Shape(12, 768, 12, 3072),  # 278.3M
    "xlmr_large": Shape(24, 1024, 16, 4096),  # 560.1M
    # the paper's capacity ablation: base depth, wider; 64-dim heads, FFN 4x width
    "xlmr_base_960": Shape(12, 960, 15, 3840),  # 374.5M
    "xlmr_base_1152": Shape(12, 1152, 18, 4608),  # 481.5M
    # XL and XXL (Goyal et al. 2021): pre-norm, no embedding LayerNorm; 3.48B and 10.7B
    "xlmr_xl": Shape(36, 2560, 32, 10240, prenorm=True),
    "xlmr_xxl": Shape(48, 4096, 32, 16384, prenorm=True),
    # for tests and the CPU demo, not for results
    "xlmr_tiny": Shape(2, 64, 4, 256),
}
