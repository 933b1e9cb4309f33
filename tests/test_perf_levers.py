"""Speed levers (xlmr_plugin/models/levers.py, the criterion's fused cross entropy): each against
the plain path on CPU (loss, logits and every gradient within tolerance, state dict
unchanged), and the training benchmark end to end in its CPU mode."""
import argparse
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

import xlmr_plugin  # noqa: F401
from xlmr_plugin.criterions.xlmr_masked_lm import LANG_SIZE, XLMRMaskedLmConfig, XLMRMaskedLmLoss
from xlmr_plugin.models.levers import FusedQKVAttention, PaddedVocabLMHead
from xlmr_plugin.modules.linear_cross_entropy import linear_cross_entropy
from plugin_utils import REPO

VOCAB = 1003  # not a multiple of 64, so padding has work to do


@pytest.fixture(scope="module")
def task():
    dictionary = Dictionary()
    for i in range(VOCAB - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary,
                           max_positions=lambda: 512, langs=["en", "de"])


def build(task, **levers) -> torch.nn.Module:
    args = argparse.Namespace(arch="xlmr_tiny", dropout=0.0, attention_dropout=0.0, **levers)
    ARCH_CONFIG_REGISTRY["xlmr_tiny"](args)
    torch.manual_seed(0)
    return ARCH_MODEL_REGISTRY["xlmr_tiny"].build_model(args, task)


def batch(pad: bool) -> dict:
    """B=3, T=24, real padding in two rows when ``pad``; about 15% masked targets."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, VOCAB, (3, 24), generator=g)
    tokens[:, 0] = 0
    if pad:
        tokens[1, 17:] = 1
        tokens[2, 9:] = 1
    target = torch.full_like(tokens, 1)
    chosen = (torch.rand(tokens.shape, generator=g) < 0.15) & tokens.ne(1)
    chosen[0, 3] = True
    target[chosen] = tokens[chosen]
    return {"net_input": {"src_tokens": tokens}, "target": target, "lang_id": torch.tensor([0, 1, 0]),
            "ntokens": int(tokens.ne(1).sum()), "nsentences": 3}


def loss_and_grads(model, criterion, sample):
    model.zero_grad()
    loss, size, log = criterion(model, sample)
    loss.backward()
    return loss.detach(), size, log, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def criterion_for(task, **cfg) -> XLMRMaskedLmLoss:
    return XLMRMaskedLmLoss(XLMRMaskedLmConfig(tpu=False, **cfg), task)


def assert_same(task, lever_model, plain_cfg=None, lever_cfg=None, atol=1e-5, pads=(False, True), logits=True):
    plain = build(task)
    assert {k: v.shape for k, v in lever_model.state_dict().items()} == \
           {k: v.shape for k, v in plain.state_dict().items()}, "a lever changed the state dict"
    lever_model.load_state_dict(plain.state_dict(), strict=True)
    for pad in pads:
        sample = batch(pad)
        l0, n0, _, g0 = loss_and_grads(plain, criterion_for(task, **(plain_cfg or {})), sample)
        l1, n1, _, g1 = loss_and_grads(lever_model, criterion_for(task, **(lever_cfg or {})), sample)
        assert int(n0) == int(n1) > 0
        assert torch.allclose(l0, l1, rtol=1e-5, atol=atol), (float(l0), float(l1))
        assert g0.keys() == g1.keys()
        for name in g0:
            assert torch.allclose(g0[name], g1[name], rtol=1e-4, atol=atol), name
        if not logits:
            continue
        masked = sample["target"].ne(1)
        plain.eval(), lever_model.eval()
        with torch.no_grad():
            logits0 = plain(**sample["net_input"], masked_tokens=masked)[0]
            logits1 = lever_model(**sample["net_input"], masked_tokens=masked)[0]
        plain.train(), lever_model.train()
        assert logits0.shape == logits1.shape == (int(masked.sum()), VOCAB)
        assert torch.allclose(logits0, logits1, rtol=1e-5, atol=atol)


def test_fuse_qkv(task):
    model = build(task, fuse_qkv=True)
    assert sum(type(m) is FusedQKVAttention for m in model.modules()) == 2
    assert_same(task, model)


def test_pad_vocab(task):
    model = build(task, vocab_pad_multiple=64)
    assert type(model.encoder.lm_head) is PaddedVocabLMHead
    assert model.encoder.lm_head.weight.shape[0] == VOCAB  # the tied embedding is not resized
    assert_same(task, model)


def test_activation_checkpointing(task):
    model = build(task, checkpoint_activations=True)
    assert all(hasattr(layer, "precheckpoint_forward") for layer in model.encoder.sentence_encoder.layers)
    assert_same(task, model)


def test_compile_layers(task):
    """Inductor's C++ compile dominates (a minute or more on two cores): one training
    graph, forward and backward, on a batch with padding."""
    model = build(task, compile_layers=True, fuse_qkv=True, vocab_pad_multiple=64)
    assert_same(task, model, atol=1e-4, pads=(True,), logits=False)


@pytest.mark.parametrize("pad_multiple", [1, 64])
def test_fused_cross_entropy_criterion(task, pad_multiple):
    model = build(task, vocab_pad_multiple=pad_multiple)
    assert_same(task, model, lever_cfg={"fused_cross_entropy": True, "cross_entropy_chunk_rows": 4})


def test_linear_cross_entropy_function():
    """Against F.cross_entropy on the full logits: fp32 to 1e-5, bf16 within bf16's precision,
    ignored rows, several chunks, padding, and a scaled upstream gradient (fp16 loss scaling)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 16, generator=g)
    w = torch.randn(VOCAB, 16, generator=g) * 0.3
    b = torch.randn(VOCAB, generator=g) * 0.1
    t = torch.randint(0, VOCAB, (37,), generator=g)
    t[[2, 30]] = -100
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        leaves = [v.to(dtype).clone().requires_grad_() for v in (x, w, b)]
        ref = F.cross_entropy(F.linear(*leaves).float(), t, reduction="sum")
        (ref * 8).backward()
        expected = [v.grad.float() for v in leaves]
        leaves = [v.detach().requires_grad_() for v in leaves]
        loss, per_row = linear_cross_entropy(*leaves, t, pad_multiple=64, chunk_rows=10)
        (loss * 8).backward()
        assert per_row.shape == (37,) and per_row[2] == 0 and per_row[30] == 0
        assert torch.allclose(loss, ref.detach(), rtol=tol)
        for got, want in zip(leaves, expected):
            assert got.grad.dtype == dtype
            assert torch.allclose(got.grad.float(), want, rtol=tol, atol=tol * want.abs().max()), dtype


def test_no_train_language_metrics(task):
    """The sync-free training step logs no per-language sums; validation still does."""
    model = build(task)
    sample = batch(pad=True)
    crit = criterion_for(task, no_train_language_metrics=True)
    _, _, log = crit(model, sample)
    assert not any(k.startswith(LANG_SIZE) for k in log)
    model.eval()
    _, _, log = crit(model, sample)
    assert int(log[LANG_SIZE + "en"]) + int(log[LANG_SIZE + "de"]) == int(sample["target"].ne(1).sum())


def test_benchmark_cpu_end_to_end(tmp_path):
    """The benchmark's CPU mode: three systems, figures printed and written; stock fairseq and HF
    on the same complete blocks, the plugin (packed lever on by default) on fuller packed ones."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--device", "cpu",
         "--layers", "1", "--width", "64", "--batch-size", "2", "--tokens-per-sample", "64",
         "--warmup", "1", "--steps", "2", "--rounds", "1", "--json", str(out), "--work-dir", str(tmp_path / "data")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    systems = {r["system"]: r for r in figures["results"]}
    assert set(systems) == {"plugin", "fairseq", "hf"}
    for name, r in systems.items():
        assert r["tokens_per_s"] > 0 and r["steps"] == 2 and 0 < r["tokens_per_step"] <= 2 * 64, name
        assert r["data_wait_s"] >= 0 and r["peak_memory_gb"] > 0 and r["loss"] > 0
        assert r["system"] in proc.stdout
    assert "packed" in figures["levers"]
    assert systems["fairseq"]["tokens_per_step"] == systems["hf"]["tokens_per_step"]
    assert systems["fairseq"]["padding_share"] == systems["hf"]["padding_share"]
    ratio = figures["ratios"]["plugin/fairseq"]
    assert ratio == pytest.approx(systems["plugin"]["tokens_per_s"] / systems["fairseq"]["tokens_per_s"], rel=1e-2)
    # the same starting weights: the losses of the three systems agree at the first step
    first = [r["first_loss"] for r in systems.values()]
    assert max(first) - min(first) < 0.05 * max(first)


def test_fairseq_train_with_levers_matches_plain_run(xlmr_data, tmp_path):
    """The real CLI: the same 4 updates with and without the levers give the same losses
    and gradient norms, and the levered checkpoint loads into stock fairseq's RobertaModel."""
    from fairseq import checkpoint_utils
    from fairseq.models.roberta import RobertaModel

    from plugin_utils import TINY, fairseq_cli, json_records

    base = [xlmr_data, *TINY, "--batch-size", "8", "--max-update", "4", "--disable-validation", "--dropout", "0.0",
            "--attention-dropout", "0.0"]
    plain = fairseq_cli("fairseq-train", base + ["--save-dir", tmp_path / "plain"])
    fast = fairseq_cli("fairseq-train", base + [
        "--save-dir", tmp_path / "fast", "--fuse-qkv", "--vocab-pad-multiple", "64",
        "--fused-cross-entropy", "--cross-entropy-chunk-rows", "64", "--no-train-language-metrics"])
    assert "lever fuse_qkv: 2 attention modules" in fast and "lever pad_vocab: output projection" in fast
    a, b = json_records(plain, "train_inner"), json_records(fast, "train_inner")
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], abs=2e-3) and y["gnorm"] == pytest.approx(x["gnorm"], rel=1e-2)
    assert any(k.startswith("loss_") for k in a[0]) and not any(k.startswith("loss_") for k in b[0])
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "fast" / "checkpoint_last.pt"))
    plain_state = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "plain" / "checkpoint_last.pt"))
    assert {k: v.shape for k, v in state["model"].items()} == {k: v.shape for k, v in plain_state["model"].items()}
    stock = RobertaModel.build_model(state["cfg"]["model"], SimpleNamespace(
        source_dictionary=_dictionary_of(xlmr_data), max_positions=lambda: 512))
    stock.load_state_dict(state["model"], strict=True)


def _dictionary_of(dest) -> Dictionary:
    """dict.txt plus the <mask> the task appends."""
    dictionary = Dictionary.load(str(dest / "dict.txt"))
    dictionary.add_symbol("<mask>")
    return dictionary
