"""Packed blocks (``--sample-break-mode packed``): each segment computes what it would
alone, blocks are full, never mix languages and give every token as often as the
sampling says, xlmr-prepare saves what the task would compute, and a packed run trains,
resumes exactly and leaves a checkpoint stock fairseq and Hugging Face read."""
import argparse
import copy
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary, data_utils
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.models.roberta import XLMRModel

import xlmr_plugin  # noqa: F401  (registers; checkpoint loading under torch >= 2.6)
from conftest import prepare_args
from plugin_utils import PLUGIN, TINY, fairseq_cli, json_records, sampling_table
from xlmr.preprocess import binarize, prepare
from xlmr_plugin.data.language_resampling_dataset import blocks_per_language, smoothed_probabilities
from xlmr_plugin.data.packed_block_dataset import PackedBlockDataset, best_fit_decreasing
from xlmr_plugin.modules.segment_attention import SegmentLayout, segment_attention
from xlmr_plugin.storage import layout
from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig, XLMRMLMTask

TOKENS = 64  # tokens per block
LANGS = ["el", "id", "mk", "ro"]  # the four smallest CC-100 files of the corpus with several documents
VOCAB = 211


@pytest.fixture(scope="module")
def packed_data(corpus_dir, tmp_path_factory):
    """A real xlmr-prepare run that also saves packed blocks of TOKENS (as it would for a recipe of them)."""
    dest = tmp_path_factory.mktemp("packed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(binarize, "BLOCK_MODES", sorted([*binarize.BLOCK_MODES, (layout.PACKED, TOKENS)]))
        assert prepare.main([*prepare_args(corpus_dir, dest, "--langs", ",".join(LANGS)),
                             "--vocab-size", "1000", "--workers", "2"]) == 0
    return dest


def documents(prefix) -> list:
    """The documents of a shard as token lists, read with fairseq: lines between document breaks."""
    lines = MMapIndexedDataset(str(prefix))
    docs, current = [], []
    for i in range(len(lines)):
        line = lines[i].tolist()
        if len(line) == 1:
            docs, current = docs + [current] * bool(current), []
        else:
            current += line
    return docs + [current] * bool(current)


# ---- the model: a packed block computes what its segments compute alone

def tiny_model(prenorm: bool, fuse_qkv: bool) -> torch.nn.Module:
    dictionary = Dictionary()
    for i in range(VOCAB - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary, max_positions=lambda: 512)
    norm = {"encoder_normalize_before": True, "layernorm_embedding": False} if prenorm else {}
    args = argparse.Namespace(arch="xlmr_tiny", dropout=0.0, attention_dropout=0.0, fuse_qkv=fuse_qkv, **norm)
    ARCH_CONFIG_REGISTRY["xlmr_tiny"](args)
    torch.manual_seed(0)
    return ARCH_MODEL_REGISTRY["xlmr_tiny"].build_model(args, task).eval()


def packed_batch(rows: list, generator: torch.Generator):
    """Rows of segments of the given lengths (each <s> and random tokens), right-padded."""
    width = max(sum(row) for row in rows)
    tokens, ids, segments = torch.ones(len(rows), width, dtype=torch.long), torch.zeros(len(rows), width, dtype=torch.long), []
    for b, row in enumerate(rows):
        start = 0
        for k, length in enumerate(row):
            segment = torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(4, VOCAB, (length - 1,), generator=generator)])
            tokens[b, start:start + length], ids[b, start:start + length] = segment, k + 1
            segments.append((b, start, segment))
            start += length
    return tokens, ids, segments


@pytest.mark.parametrize("prenorm", [False, True], ids=["postnorm", "prenorm"])
@pytest.mark.parametrize("fuse_qkv", [False, True], ids=["three", "fused"])
def test_each_segment_of_a_packed_block_computes_what_it_computes_alone(prenorm, fuse_qkv):
    model = tiny_model(prenorm, fuse_qkv)
    assert model.encoder.sentence_encoder.layers[0].normalize_before == prenorm
    tokens, ids, segments = packed_batch([[9, 5, 17, 1], [20, 12], [7, 4, 3]], torch.Generator().manual_seed(2))
    assert tokens.eq(1).any(), "the batch must hold padding"
    with torch.no_grad():
        packed, _ = model(tokens, segment_ids=ids, features_only=True)
        logits, _ = model(tokens, segment_ids=ids)
        for b, start, segment in segments:
            alone, _ = model(segment.unsqueeze(0), features_only=True)
            assert (packed[b, start:start + len(segment)] - alone[0]).abs().max().item() < 1e-5
            alone, _ = model(segment.unsqueeze(0))
            assert (logits[b, start:start + len(segment)] - alone[0]).abs().max().item() < 1e-4
        unpacked, _ = model(tokens, features_only=True)  # without segment ids: one sequence per row
    assert (unpacked - packed)[ids.ne(0)].abs().max().item() > 1e-2


def test_variable_length_attention_gives_the_block_diagonal_masks_result():
    """The CUDA path (nested jagged tensors into SDPA) against the CPU one, values and gradients."""
    g = torch.Generator().manual_seed(3)
    _, ids, _ = packed_batch([[9, 5, 17, 1], [20, 12], [7, 4, 3]], g)
    q, k, v = (torch.randn(3, 4, ids.size(1), 16, generator=g, requires_grad=True) for _ in range(3))
    real = ids.ne(0)[:, None, :, None].expand(3, 4, ids.size(1), 16)
    outputs, grads = [], []
    for varlen in (False, True):
        layout_ = SegmentLayout.of(ids, varlen=varlen)
        assert (layout_.mask is None) == varlen
        out = segment_attention(q, k, v, layout_, dropout_p=0.0)
        outputs.append(out[real])
        grads.append(torch.autograd.grad((out[real] ** 2).sum(), (q, k, v)))
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-5
    assert all((a - b).abs().max().item() < 1e-5 for a, b in zip(*grads))


# ---- the blocks

def test_best_fit_decreasing_fills_the_bin_that_fits_best():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 65, 3000)
    bins = best_fit_decreasing(sizes, 64)
    load = np.bincount(bins, weights=sizes)
    assert load.max() <= 64 and load.sum() == sizes.sum()
    assert len(load) <= np.ceil(sizes.sum() / 64) * 1.02  # near the lower bound
    assert np.array_equal(bins, best_fit_decreasing(sizes, 64))  # deterministic
    with pytest.raises(ValueError, match="do not fit bins of 64"):
        best_fit_decreasing([65], 64)


def test_blocks_hold_every_documents_tokens_once_in_full_blocks(packed_data):
    for lang in LANGS:
        prefix = layout.train_shard(packed_data, lang, 0)
        blocks = PackedBlockDataset(prefix, TOKENS, bos=0)
        pieces = []
        for i in range(len(blocks)):
            tokens, ids = blocks[i], blocks.segment_ids(i)
            assert len(tokens) == len(ids) == blocks.sizes[i] <= TOKENS
            assert torch.equal(ids, torch.sort(ids).values) and ids[0] == 1
            starts = torch.cat([torch.tensor([True]), ids[1:] != ids[:-1]])
            assert torch.equal(tokens.eq(0), starts)  # an <s> exactly where each segment starts
            pieces += [p[1:].tolist() for p in torch.tensor_split(tokens, torch.nonzero(starts).view(-1)[1:].tolist())]
        # the pieces are the documents cut every TOKENS - 1 tokens, each piece once
        expected = [doc[i:i + TOKENS - 1] for doc in documents(prefix) for i in range(0, len(doc), TOKENS - 1)]
        assert Counter(map(tuple, pieces)) == Counter(map(tuple, expected))
        # full blocks but for a few: pieces of more than half a block do not pair (the last
        # pieces of these few documents), a share that shrinks with the shard
        assert len(blocks) - np.ceil(blocks.sizes.sum() / TOKENS) <= 3, lang


def test_xlmr_prepare_saves_the_blocks_the_task_would_compute(packed_data, tmp_path):
    prefix = layout.train_shard(packed_data, "ro", 0)
    saved = PackedBlockDataset(prefix, TOKENS, bos=0)
    assert isinstance(saved.segments, np.memmap) and isinstance(saved.blocks, np.memmap)
    for name in ("bin", "idx"):
        (tmp_path / f"train.{name}").write_bytes(prefix.with_name(f"train.{name}").read_bytes())
    computed = PackedBlockDataset(tmp_path / "train", TOKENS, bos=0)
    assert not isinstance(computed.segments, np.memmap)
    assert np.array_equal(saved.segments, computed.segments) and np.array_equal(saved.blocks, computed.blocks)


def test_an_epoch_gives_every_piece_as_often_as_the_sampling_says_and_never_mixes_languages(packed_data):
    task = XLMRMLMTask.setup_task(XLMRMLMConfig(data=str(packed_data), tokens_per_sample=TOKENS, seed=7,
                                                train_subset="train", sample_break_mode=layout.PACKED))
    task.load_dataset("train", epoch=2)
    dataset = task.dataset("train")
    itr = task.get_batch_iterator(dataset, max_sentences=64, seed=7, epoch=2, disable_iterator_cache=True)
    pad = task.dictionary.pad()
    seen = {lang: Counter() for lang in task.langs}
    blocks_seen = Counter()
    for sample in itr.next_epoch_itr(shuffle=True):
        src, target, ids = sample["net_input"]["src_tokens"], sample["target"], sample["net_input"]["segment_ids"]
        original = torch.where(target.ne(pad), target, src)  # the tokens before masking
        assert torch.equal(ids.eq(0), src.eq(pad))
        for row, lang_id in enumerate(sample["lang_id"].tolist()):
            lang = task.langs[lang_id]
            blocks_seen[lang] += 1
            for k in range(1, int(ids[row].max()) + 1):
                piece = original[row][ids[row] == k]
                assert piece[0] == task.dictionary.bos()
                seen[lang][tuple(piece[1:].tolist())] += 1
    tokens = [task.train_tokens[lang] for lang in task.langs]
    blocks = [len(PackedBlockDataset(layout.train_shard(packed_data, lang, 0), TOKENS, 0)) for lang in task.langs]
    drawn = blocks_per_language(smoothed_probabilities(tokens, task.cfg.multilang_sampling_alpha), blocks)
    for lang, n, d in zip(task.langs, blocks, drawn):
        prefix = layout.train_shard(packed_data, lang, 0)
        pieces = Counter(tuple(doc[i:i + TOKENS - 1]) for doc in documents(prefix) for i in range(0, len(doc), TOKENS - 1))
        assert blocks_seen[lang] == d
        assert set(seen[lang]) <= set(pieces), f"{lang}: a piece from elsewhere"
        copies = d // n  # every block that often, d mod n blocks once more
        for piece, count in pieces.items():
            assert count * copies <= seen[lang][piece] <= count * (copies + 1), (lang, piece[:5])
    assert any(d < n for n, d in zip(blocks, drawn)) and any(d > n for n, d in zip(blocks, drawn))


# ---- training

@pytest.fixture(scope="module")
def packed_runs(packed_data, tmp_path_factory):
    """30 updates straight, and 13 then resumed to 30, on two languages (several epochs)."""
    out = tmp_path_factory.mktemp("runs")
    args = [packed_data, *TINY, "--langs", "el,mk", "--sample-break-mode", "packed", "--max-tokens", "1024",
            "--disable-validation"]
    straight = fairseq_cli("fairseq-train", [*args, "--max-update", "30", "--save-dir", out / "a"])
    fairseq_cli("fairseq-train", [*args, "--max-update", "13", "--save-dir", out / "b"])
    resumed = fairseq_cli("fairseq-train", [*args, "--max-update", "30", "--save-dir", out / "b"])
    return straight, resumed, out / "a" / "checkpoint_last.pt"


def test_a_packed_run_trains_on_full_blocks_and_resumes_exactly(packed_runs):
    straight, resumed, _ = packed_runs
    full, tail = json_records(straight, "train_inner"), json_records(resumed, "train_inner")
    assert len(full) == 30 and full[-1]["epoch"] >= 2, "no epoch boundary: the per-epoch redraw is not exercised"
    assert np.mean([r["loss"] for r in full[-5:]]) < np.mean([r["loss"] for r in full[:5]])
    assert "Loaded checkpoint" in resumed and tail[0]["num_updates"] == 14
    assert [(r["loss"], r["lr"], r["gnorm"]) for r in full[13:]] == [(r["loss"], r["lr"], r["gnorm"]) for r in tail]
    table = sampling_table(straight)
    assert sorted(table) == ["el", "mk"]
    # full blocks: the words per batch are the blocks' slots (max-tokens / TOKENS blocks of TOKENS)
    assert np.median([r["wpb"] for r in full]) > 0.97 * 1024


def test_a_packed_checkpoint_loads_in_stock_fairseq_and_in_hugging_face(packed_runs, packed_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    from xlmr_plugin.interop.hf_cli import export_hf

    _, _, checkpoint = packed_runs
    hub = XLMRModel.from_pretrained(str(checkpoint.parent), checkpoint.name, data_name_or_path=str(packed_data),
                                    user_dir=str(PLUGIN), sentencepiece_model=str(packed_data / "spm.model")).eval()
    stock = XLMRModel.build_model(copy.deepcopy(hub.cfg.model), hub.task).eval()
    stock.load_state_dict(hub.model.state_dict(), strict=True)
    export_hf(checkpoint, tmp_path / "hf", packed_data)
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    tokens = hub.encode("Ένα μικρό σπίτι στη λίμνη.").unsqueeze(0)
    with torch.no_grad():
        ours, _ = hub.model(tokens)
        theirs, _ = stock(tokens)
        hf_logits = hf(input_ids=tokens).logits
    assert (ours - theirs).abs().max().item() < 1e-5
    assert (ours - hf_logits).abs().max().item() < 1e-4


def test_packed_blocks_with_fairseqs_attention_stop_before_training(packed_data, tmp_path):
    args = [packed_data, *TINY, "--sample-break-mode", "packed", "--attention-impl", "fairseq", "--batch-size", "4", "--max-update", "1",
            "--save-dir", tmp_path]
    proc = subprocess.run([str(Path(sys.executable).with_name("fairseq-train")), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--sample-break-mode packed needs the xlmr_roberta model with --attention-impl sdpa" in proc.stderr
    assert "this model has --attention-impl fairseq" in proc.stderr
    assert "train_inner" not in proc.stdout + proc.stderr
