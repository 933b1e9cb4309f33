"""The xlmr_roberta model: XLM-R shapes, parity with stock RobertaModel, SDPA, bf16 and optimizer."""
import argparse
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from fairseq import options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from fairseq.optim.adam import Adam, FairseqAdamConfig

import xlmr_plugin  # noqa: F401
from xlmr_plugin.patches.bf16_training import bf16_without_tpu
from xlmr_plugin.criterions.xlmr_masked_lm import XLMRMaskedLmLoss
from xlmr_plugin.models.xlmr_roberta import XLMRRobertaModel
from xlmr_plugin.optim.fused_adamw import FusedAdamW

XLMR_VOCAB = 250_002


def fake_task(vocab: int) -> SimpleNamespace:
    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(source_dictionary=dictionary, max_positions=lambda: 512)


def build(arch: str, task, **overrides) -> torch.nn.Module:
    args = argparse.Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task)


@pytest.fixture(scope="module")
def xlmr_task():
    return fake_task(XLMR_VOCAB)


@pytest.fixture
def meta(monkeypatch):
    """Build on the meta device (no memory for 10B parameters); BERT init copies
    through the CPU, so it is skipped: it does not change shapes."""
    from fairseq.models.roberta import model as roberta

    monkeypatch.setattr(roberta, "init_bert_params", lambda module: None)
    with torch.device("meta"):
        yield


@pytest.mark.parametrize(
    "arch,expected,tolerance",
    [
        ("xlmr_base", 278.3e6, 0.005),  # the paper's and the release's sizes
        ("xlmr_large", 560.1e6, 0.005),
        ("xlmr_xl", 3.48e9, 0.01),
        ("xlmr_xxl", 10.7e9, 0.01),
    ],
)
def test_parameter_counts(arch, expected, tolerance, xlmr_task, meta):
    model = build(arch, xlmr_task)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - expected) / expected < tolerance, f"{arch}: {count:,}"


@pytest.mark.parametrize("arch,width,heads,ffn", [("xlmr_base_960", 960, 15, 3840), ("xlmr_base_1152", 1152, 18, 4608)])
def test_capacity_ablation_widths(arch, width, heads, ffn, xlmr_task, meta):
    model = build(arch, xlmr_task)
    encoder = model.encoder.sentence_encoder
    layer = encoder.layers[0]
    assert len(encoder.layers) == 12 and encoder.embed_tokens.weight.shape == (XLMR_VOCAB, width)
    assert layer.self_attn.num_heads == heads and layer.self_attn.head_dim == 64
    assert layer.fc1.weight.shape == (ffn, width)


def test_xl_is_prenorm_and_base_is_postnorm(xlmr_task, meta):
    xl, base = build("xlmr_xl", xlmr_task), build("xlmr_base", xlmr_task)
    assert xl.encoder.sentence_encoder.layers[0].normalize_before
    assert xl.encoder.sentence_encoder.layer_norm is not None
    assert not base.encoder.sentence_encoder.layers[0].normalize_before
    assert base.encoder.sentence_encoder.layernorm_embedding is not None
    # tied LM head; 512 positions + padding offset
    assert base.encoder.lm_head.weight is base.encoder.sentence_encoder.embed_tokens.weight
    assert base.encoder.sentence_encoder.embed_positions.weight.shape[0] == 514


@pytest.fixture(scope="module")
def tiny_pair():
    """Stock fairseq RobertaModel and the plugin model with the same weights."""
    task = fake_task(300)
    dims = dict(encoder_layers=2, encoder_embed_dim=64, encoder_attention_heads=4, encoder_ffn_embed_dim=128)
    torch.manual_seed(0)
    ours = build("xlmr_tiny", task, **dims)
    stock = build("roberta_base", task, **dims)
    assert type(stock) is RobertaModel and type(ours) is XLMRRobertaModel
    stock.load_state_dict(ours.state_dict(), strict=True)  # same keys and shapes
    return stock.eval(), ours.eval()


@pytest.mark.parametrize("padded", [False, True])
def test_encoder_matches_stock_roberta(tiny_pair, padded):
    stock, ours = tiny_pair
    torch.manual_seed(1)
    tokens = torch.randint(4, 300, (3, 40))
    tokens[:, 0] = 0
    if padded:
        tokens[1, 25:] = 1
        tokens[2, 7:] = 1
    with torch.no_grad():
        a, _ = stock(tokens, features_only=True)
        b, _ = ours(tokens, features_only=True)
        masked = tokens.ne(1) & (torch.rand(tokens.shape) < 0.3)
        la, _ = stock(tokens, masked_tokens=masked)
        lb, _ = ours(tokens, masked_tokens=masked)
    assert (a - b).abs().max().item() < 1e-5
    assert la.shape == (int(masked.sum()), 300) and (la - lb).abs().max().item() < 1e-4


def test_gradients_match_stock_roberta(tiny_pair):
    stock, ours = tiny_pair
    tokens = torch.randint(4, 300, (2, 16))
    tokens[1, 10:] = 1
    grads = []
    for model in (stock, ours):
        model.zero_grad()
        logits, _ = model(tokens)
        F.cross_entropy(logits.view(-1, 300), tokens.view(-1), ignore_index=1).backward()
        grads.append(model.encoder.sentence_encoder.layers[0].self_attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("checkpoint_activations", [False, True])
def test_attention_impl_is_chosen_while_building(checkpoint_activations):
    """Each layer is built with its attention class; the same seed gives the same weights
    under both kernels, and --checkpoint-activations still wraps every SDPA layer."""
    from fairseq.modules import MultiheadAttention

    from xlmr_plugin.modules.sdpa_multihead_attention import SDPAMultiheadAttention

    task = fake_task(300)
    models = {}
    for impl in ("sdpa", "fairseq"):
        torch.manual_seed(0)
        models[impl] = build("xlmr_tiny", task, attention_impl=impl, checkpoint_activations=checkpoint_activations)
    for impl, attention in (("sdpa", SDPAMultiheadAttention), ("fairseq", MultiheadAttention)):
        layers = models[impl].encoder.sentence_encoder.layers
        assert [type(layer.self_attn) for layer in layers] == [attention, attention]
        assert all(hasattr(layer, "precheckpoint_forward") == checkpoint_activations for layer in layers)
    sdpa, plain = (models[impl].state_dict() for impl in ("sdpa", "fairseq"))
    assert sdpa.keys() == plain.keys() and all(torch.equal(sdpa[k], plain[k]) for k in sdpa)


def test_sdpa_gets_no_mask_without_padding(tiny_pair, monkeypatch):
    _, ours = tiny_pair
    masks = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        masks.append(kwargs.get("attn_mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        ours(torch.randint(4, 300, (2, 12)), features_only=True)
        padded = torch.randint(4, 300, (2, 12))
        padded[0, 6:] = 1
        ours(padded, features_only=True)
    assert masks[:2] == [None, None]  # one call per layer
    assert masks[2] is not None and masks[2].shape == (2, 1, 1, 12) and not masks[2][0, 0, 0, 6:].any()


def parse_train_args(*extra: str):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "/nonexistent", "--user-dir", str(xlmr_plugin.__path__[0]), "--task", "xlmr_mlm",
        "--arch", "xlmr_tiny", "--criterion", "xlmr_masked_lm", "--optimizer", "fused_adamw",
        "--max-tokens", "512", *extra,
    ])
    return convert_namespace_to_omegaconf(args)


def test_bf16_trains_without_tpu_mode():
    cfg = parse_train_args("--bf16")
    assert cfg.common.bf16 and cfg.common.tpu  # fairseq's parser implies TPU
    bf16_without_tpu(cfg)
    assert cfg.common.bf16 and not cfg.common.tpu and not cfg.distributed_training.tpu
    assert not cfg.optimizer.tpu and not cfg.criterion.tpu and not cfg.model.tpu
    assert getattr(distributed_utils.call_main, "_xlmr_bf16_fix", False)  # runs before call_main
    plain = parse_train_args()
    bf16_without_tpu(plain)
    assert not plain.common.bf16 and not plain.common.tpu


def test_fused_adamw_on_cpu_is_torch_fused_adamw_and_computes_fairseq_adam():
    """Same updates as fairseq's Adam (its eps placement aside: gradients kept well above eps)."""
    torch.manual_seed(0)
    grads = [torch.randn(50, 8).sign() * (0.01 + torch.rand(50, 8)) for _ in range(3)]
    params = {name: [torch.nn.Parameter(torch.ones(50, 8))] for name in ("fused", "fairseq")}
    cfg = OmegaConf.structured(FairseqAdamConfig(lr=[0.1], adam_betas="(0.9, 0.98)", adam_eps=1e-9,
                                                 weight_decay=0.01, tpu=False))
    fused, reference = FusedAdamW(cfg, params["fused"]), Adam(params["fairseq"], lr=0.1, betas=(0.9, 0.98),
                                                               eps=1e-9, weight_decay=0.01)
    assert type(fused.optimizer) is torch.optim.AdamW and fused.optimizer.defaults["fused"]
    for grad in grads:
        for opt, (p,) in ((fused, params["fused"]), (reference, params["fairseq"])):
            p.grad = grad.clone()
            opt.step()
    assert torch.allclose(params["fused"][0], params["fairseq"][0], rtol=1e-5, atol=1e-6)
    assert not torch.equal(params["fused"][0], torch.ones(50, 8))


@pytest.mark.parametrize("mask_rate", [0.3, 0.0])
def test_criterion_splits_the_loss_by_language(tiny_pair, mask_rate):
    _, ours = tiny_pair
    task = SimpleNamespace(langs=["de", "el", "en"], target_dictionary=fake_task(300).source_dictionary)
    criterion = XLMRMaskedLmLoss(OmegaConf.create({"tpu": False}), task)
    torch.manual_seed(2)
    tokens = torch.randint(4, 300, (4, 20))
    target = torch.where(torch.rand(tokens.shape) < mask_rate, tokens, torch.ones_like(tokens))
    sample = {"net_input": {"src_tokens": tokens}, "target": target, "ntokens": 80, "nsentences": 4,
              "lang_id": torch.tensor([2, 0, 2, 1])}
    with torch.no_grad():
        loss, sample_size, log = criterion(ours, sample)
    sizes = [int(log[f"lang_size:{lang}"]) for lang in task.langs]
    assert sum(sizes) == int(sample_size) == int(target.ne(1).sum())
    assert sizes[0] == int(target[1].ne(1).sum()) and sizes[1] == int(target[3].ne(1).sum())
    total = sum(float(log[f"lang_loss:{lang}"]) for lang in task.langs)
    assert total == pytest.approx(float(loss), rel=1e-5, abs=1e-6)
    if mask_rate == 0:
        assert float(loss) == 0 and int(sample_size) == 0
