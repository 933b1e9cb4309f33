"""The encoder's kernels: the explicit attention maths computes SDPA's result and runs where
it is the faster (CPU, bf16, short blocks), SDPA everywhere else; the layers' GELU is
fairseq's, bit for bit, in bf16."""
import argparse

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.models.transformer import TransformerConfig

from xlmr_plugin.modules.attention_kernel import EXPLICIT_MAX_LENGTH, attention, explicit_attention
from xlmr_plugin.modules.sdpa_transformer_encoder import SDPATransformerEncoderLayer
from xlmr_plugin.modules.segment_attention import SegmentLayout


def qkv(length: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(2 * torch.randn(3, 4, length, 16, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
            for _ in range(3)]


def segment_mask(length: int) -> torch.Tensor:
    """B x 1 x T x T within segments of uneven lengths, the last rows padding (id 0)."""
    ids = torch.zeros(3, length, dtype=torch.long)
    ids[0, : length // 3], ids[0, length // 3: length - 5] = 1, 2
    ids[1, :] = 1
    ids[2, : length // 2], ids[2, length // 2: length - 1] = 1, 2
    return SegmentLayout.of(ids, varlen=False).mask


def test_explicit_attention_is_sdpa_in_float64():
    for mask in (None, segment_mask(40), torch.rand(3, 1, 1, 40, generator=torch.Generator().manual_seed(1)) > 0.3):
        q, k, v = qkv(40, torch.float64)
        ours, theirs = explicit_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert (ours - theirs).abs().max().item() < 1e-12
        for a, b in zip(torch.autograd.grad(ours.square().sum(), (q, k, v)),
                        torch.autograd.grad(theirs.square().sum(), (q, k, v))):
            assert (a - b).abs().max().item() < 1e-10


def test_explicit_attention_in_bf16_is_as_close_to_float64_as_sdpa_is():
    mask = segment_mask(64)
    reference = F.scaled_dot_product_attention(*[x.detach() for x in qkv(64, torch.float64)], attn_mask=mask)
    errors = {}
    for name, fn in (("explicit", explicit_attention), ("sdpa", F.scaled_dot_product_attention)):
        out = fn(*qkv(64, torch.bfloat16), mask)
        errors[name] = (out.double() - reference).abs().mean().item()
    assert errors["explicit"] < 2 * errors["sdpa"] < 0.05, errors


def test_the_explicit_maths_runs_on_cpu_in_bf16_up_to_its_length_only():
    mask = segment_mask(EXPLICIT_MAX_LENGTH)
    q, k, v = qkv(EXPLICIT_MAX_LENGTH, torch.bfloat16)
    assert torch.equal(attention(q, k, v, mask), explicit_attention(q, k, v, mask))
    q, k, v = qkv(EXPLICIT_MAX_LENGTH, torch.float32)
    assert torch.equal(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    q, k, v = qkv(EXPLICIT_MAX_LENGTH + 1, torch.bfloat16)
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_the_layers_gelu_is_fairseqs_in_bf16():
    cfg = TransformerConfig.from_namespace(argparse.Namespace(
        encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2, activation_fn="gelu"))
    layer = SDPATransformerEncoderLayer(cfg)
    assert layer.activation_fn is F.gelu  # not fairseq's, which converts to fp32 and back
    x = (3 * torch.randn(64, 1024, generator=torch.Generator().manual_seed(0))).bfloat16().requires_grad_()
    ours, theirs = layer.activation_fn(x), utils.get_activation_fn("gelu")(x)
    assert theirs.dtype == ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)
    grad = torch.randn_like(x)
    assert torch.equal(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(theirs, x, grad)[0])
