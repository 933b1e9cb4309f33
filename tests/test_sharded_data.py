"""Training data in shards: how xlmr-prepare cuts them, how xlmr_mlm walks them, and
that a run over shards trains, resumes exactly and refuses a damaged shard."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.data import TokenBlockDataset, data_utils
from fairseq.data.indexed_dataset import MMapIndexedDataset

import xlmr_plugin  # noqa: F401  (registers the task)
from plugin_utils import TINY, fairseq_cli, json_records, sampling_table
from xlmr.preprocess import prepare
from xlmr.preprocess.binarize import ShardWriter
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities
from xlmr_plugin.data.mapped_block_dataset import MappedBlockDataset, line_sizes, precompute_blocks
from xlmr_plugin.data.split_long_lines_dataset import SplitLongLinesDataset
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.token_shards import ShardError, write_index
from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig, XLMRMLMTask

# it in about eight shards, sv in three, el (five documents) in one
LANGS = ("el", "it", "sv")
SHARD_TOKENS = 20_000


@pytest.fixture(scope="module")
def sharded(xlmr_data, corpus_dir, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("sharded")
    vocab = ["--spm-model", str(xlmr_data / "spm.model"), "--dict", str(xlmr_data / "dict.txt")]
    assert prepare.main([str(corpus_dir), str(dest), "--langs", ",".join(LANGS), *vocab,
                         "--shard-tokens", str(SHARD_TOKENS), "--workers", "2"]) == 0
    return dest


def make_task(data: Path, **overrides) -> XLMRMLMTask:
    cfg = XLMRMLMConfig(data=str(data), tokens_per_sample=64, seed=7, train_subset="train")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return XLMRMLMTask.setup_task(cfg)


def test_shards_are_whole_documents_of_the_asked_size(sharded):
    for lang in LANGS:
        shards = layout.train_shards(sharded, lang)
        recorded = json.loads((sharded / lang / layout.LANGUAGE_MARKER).read_text())["train_shards"]
        assert len(shards) == len(recorded) and (len(shards) > 2 or lang != "it")
        for prefix, tokens in zip(shards, recorded):
            sizes = line_sizes(prefix)
            assert int(sizes.sum()) == tokens and sizes[-1] == 1  # ends with a document break
            # only the first break past SHARD_TOKENS ends a shard
            before_last_break = int(sizes[: np.flatnonzero(sizes == 1)[-2] + 1].sum()) if (sizes == 1).sum() > 1 else 0
            assert before_last_break < SHARD_TOKENS
        assert all(t >= SHARD_TOKENS for t in recorded[:-1])


def test_cuts_do_not_depend_on_how_the_stream_is_batched(tmp_path):
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 60, 5000).astype(np.int32)
    sizes[rng.choice(5000, 600, replace=False)] = 1  # document breaks
    tokens = rng.integers(4, 1000, int(sizes.sum())).astype(np.uint16)
    written = []
    for name, batch in (("one", 5000), ("many", 7)):
        (tmp_path / name).mkdir()
        writer = ShardWriter(tmp_path / name / "train", np.uint16, shard_tokens=5000)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        for first in range(0, len(sizes), batch):
            end = min(first + batch, len(sizes))
            writer.add(tokens[offsets[first]:offsets[end]], sizes[first:end])
        assert writer.close() == int(sizes.sum())
        written.append([(p.with_suffix(".bin").read_bytes(), p.with_suffix(".idx").read_bytes())
                        for p in layout.train_shards(tmp_path, name)])
    assert written[0] == written[1] and len(written[0]) > 3
    assert b"".join(b for b, _ in written[0]) == tokens.tobytes()


def test_index_writer_matches_fairseq(tmp_path):
    sizes = np.random.default_rng(1).integers(1, 700, 1000).astype(np.int32)
    with MMapIndexedDataset.Index.writer(str(tmp_path / "fairseq.idx"), np.int32) as index:
        index.write(sizes)
    write_index(tmp_path / "ours.idx", np.int32, sizes)
    assert (tmp_path / "ours.idx").read_bytes() == (tmp_path / "fairseq.idx").read_bytes()


@pytest.mark.parametrize("mode", ["none", "complete", "complete_doc", "eos"])
def test_saved_blocks_are_fairseqs_blocks(sharded, tmp_path, mode):
    prefix = layout.train_shard(sharded, "it", 0)
    for name in ("bin", "idx"):
        shutil.copy(f"{prefix}.{name}", tmp_path / f"train.{name}")
    prefix = tmp_path / "train"
    computed = MappedBlockDataset(prefix, 64, mode)
    precompute_blocks(prefix, 64, mode)
    saved = MappedBlockDataset(prefix, 64, mode)
    assert isinstance(saved.slices, np.memmap) and not isinstance(computed.slices, np.memmap)
    raw = data_utils.load_indexed_dataset(str(prefix), None)
    lines = raw if mode == "none" else SplitLongLinesDataset.wrap_if_needed(raw, 63)
    stock = lines if mode == "eos" else TokenBlockDataset(lines, lines.sizes, 63, pad=1, eos=2, break_mode=mode)
    assert len(stock) == len(saved) == len(computed)
    assert all(torch.equal(stock[i], saved[i]) and torch.equal(stock[i], computed[i]) for i in range(len(stock)))


def test_each_epoch_takes_every_language_at_q_with_its_next_shard(sharded):
    task = make_task(sharded)
    tokens = [task.train_tokens[lang] for lang in task.langs]
    q = smoothed_probabilities(tokens, task.cfg.multilang_sampling_alpha)
    shards = {lang: len(task.train_shards[lang]) for lang in task.langs}
    for epoch in (1, 2, 3, shards["it"] + 1):
        task.load_dataset("train", epoch=epoch)
        dataset = task.dataset("train")
        itr = task.get_batch_iterator(dataset, max_sentences=64, seed=7, epoch=epoch, disable_iterator_cache=True)
        itr.next_epoch_itr(shuffle=True)
        indices = np.concatenate(itr.frozen_batches)
        counts = np.bincount(np.searchsorted(dataset.dataset.cumulative_sizes, indices, side="right"),
                             minlength=len(task.langs))
        assert (counts > 0).all(), (epoch, counts)
        share = counts / counts.sum()
        assert np.all(np.abs(share - q) <= 3 * np.sqrt(q * (1 - q) / counts.sum()) + 1 / counts.sum()), (share, q)
        for lang in task.langs:  # each language on its shard (epoch - 1) mod its shard count
            assert task._lang_cache[("train", lang)][0] == (epoch - 1) % shards[lang]


def test_sharded_run_trains_and_resumes_exactly_across_shards(sharded, tmp_path):
    args = [sharded, *TINY, "--max-tokens", "16384", "--disable-validation"]
    straight = fairseq_cli("fairseq-train", [*args, "--max-update", "40", "--save-dir", tmp_path / "a"])
    full = json_records(straight, "train_inner")
    first_epoch = sum(r["epoch"] == 1 for r in full)
    assert full[-1]["epoch"] >= 3 and 2 < first_epoch < 35, "the run must cross shard boundaries"
    stop = first_epoch + 2  # stop inside epoch 2, resume into epoch 3 and beyond
    fairseq_cli("fairseq-train", [*args, "--max-update", str(stop), "--save-dir", tmp_path / "b"])
    resumed = fairseq_cli("fairseq-train", [*args, "--max-update", "40", "--save-dir", tmp_path / "b"])
    tail = json_records(resumed, "train_inner")
    assert tail[0]["num_updates"] == stop + 1
    assert [(r["loss"], r["gnorm"]) for r in full[stop:]] == [(r["loss"], r["gnorm"]) for r in tail]
    assert sampling_table(straight)["it"]["shards"] == len(layout.train_shards(sharded, "it"))


def test_missing_or_truncated_shard_stops_before_training(sharded, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sharded, data)
    truncated = Path(f"{layout.train_shard(data, 'it', 1)}.bin")
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size - 2)
    with pytest.raises(ShardError, match=f"{truncated}: .* bytes where .* records"):
        make_task(data)
    shutil.copy(f"{layout.train_shard(sharded, 'it', 1)}.bin", truncated)
    missing = Path(f"{layout.train_shard(data, 'it', 2)}.idx")
    missing.unlink()
    with pytest.raises(ShardError, match=f"{missing}: missing"):
        make_task(data)
    log = fairseq_cli_failing([data, *TINY, "--batch-size", "8", "--max-update", "5", "--save-dir", tmp_path / "c"])
    assert str(missing) in log and "num_updates" not in log


def fairseq_cli_failing(args) -> str:
    """fairseq-train's log when it must fail."""
    with pytest.raises(AssertionError, match="fairseq-train failed") as failed:
        fairseq_cli("fairseq-train", args)
    return str(failed.value)


def test_shards_of_another_vocabulary_are_refused(sharded, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sharded, data)
    with open(data / layout.DICT, "a", encoding="utf-8") as f:
        f.write("▁another 1\n")  # a dictionary other than the one the shards were made with
    with pytest.raises(ShardError, match="binarized with another vocabulary"):
        make_task(data)


def test_blocks_longer_than_the_models_positions_are_refused_by_name(sharded, tmp_path):
    args = [a if a != "64" else "600" for a in TINY]  # --tokens-per-sample 600, 512 positions
    log = fairseq_cli_failing([sharded, *args, "--batch-size", "8", "--max-update", "5", "--save-dir", tmp_path])
    assert "--tokens-per-sample 600 is more than the model's 512 positions" in log
