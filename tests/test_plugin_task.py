"""The xlmr_mlm task in-process on a prepared DEST: languages, blocks, α sampling, masking."""
import numpy as np
import pytest
import torch
from fairseq.data import TokenBlockDataset, data_utils

import xlmr_plugin  # noqa: F401  (registers the task)
from plugin_utils import small_dest
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities
from xlmr_plugin.data.split_long_lines_dataset import SplitLongLinesDataset
from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig, XLMRMLMTask


@pytest.fixture(scope="module")
def dest(xlmr_data, tmp_path_factory):
    """The six prepared languages cut to 300 lines each (el has 150): seconds per epoch."""
    langs = sorted(p.name for p in xlmr_data.iterdir() if (p / "train.idx").exists())
    return small_dest(xlmr_data, tmp_path_factory.mktemp("task_data"), {lang: 300 for lang in langs})


def make_task(data, **overrides) -> XLMRMLMTask:
    cfg = XLMRMLMConfig(data=str(data), tokens_per_sample=64, seed=7, train_subset="train")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return XLMRMLMTask.setup_task(cfg)


def epoch_lang_counts(task: XLMRMLMTask, epoch: int) -> np.ndarray:
    """Blocks per language over one epoch of the batch iterator the trainer uses."""
    task.load_dataset("train", epoch=epoch)
    dataset = task.dataset("train")
    itr = task.get_batch_iterator(
        dataset, max_sentences=256, seed=7, epoch=epoch, disable_iterator_cache=True,
    )
    itr.next_epoch_itr(shuffle=True)
    indices = np.concatenate(itr.frozen_batches)
    # SortDataset -> ConcatDataset of languages: an index's language is its concat part
    lang = np.searchsorted(dataset.dataset.cumulative_sizes, indices, side="right")
    return np.bincount(lang, minlength=len(task.langs))


def test_languages_are_train_folders_sorted_and_langs_is_checked(dest, tmp_path):
    data = small_dest(dest, tmp_path / "d", {"ja": 30, "el": 30})
    (data / "notes").mkdir()  # a folder without a train split is not a language
    assert make_task(data).langs == ["el", "ja"]
    assert make_task(data, langs="ja").langs == ["ja"]
    with pytest.raises(ValueError, match=r"no training data for xx.*languages found: el,ja"):
        make_task(data, langs="ja,xx")


def test_mask_symbol_appended_after_dict(dest):
    task = make_task(dest)
    pieces = sum(1 for _ in open(dest / "dict.txt", encoding="utf-8"))
    assert len(task.dictionary) == 4 + pieces + 1
    assert task.dictionary[task.mask_idx] == "<mask>" and task.mask_idx == len(task.dictionary) - 1


@pytest.mark.parametrize("mode", ["complete", "complete_doc", "eos"])
def test_long_lines_are_split_into_blocks_not_dropped(dest, mode):
    task = make_task(dest, sample_break_mode=mode)
    lang = task.langs[0]
    raw = data_utils.load_indexed_dataset(str(dest / lang / "valid"), task.dictionary)
    block = task.cfg.tokens_per_sample - 1
    # fairseq's TokenBlockDataset keeps over-long lines whole in these modes
    stock_max = raw.sizes.max() if mode == "eos" else TokenBlockDataset(
        raw, raw.sizes, block, pad=1, eos=2, break_mode=mode).sizes.max()
    assert stock_max > block, "data has no over-long line: the test would prove nothing"

    task.load_dataset("valid")
    ours = task.dataset("valid")
    lang_sizes = ours.sizes[np.array([ours[i]["lang_id"] for i in range(len(ours))]) == 0]
    assert ours.sizes.max() <= task.cfg.tokens_per_sample
    separators = int((raw.sizes == 1).sum()) if mode == "complete_doc" else 0
    # every token is kept: block sizes minus the <s> of each block
    assert int((lang_sizes - 1).sum()) == int(raw.sizes.sum()) - separators


def test_split_pieces_are_balanced():
    class Lines(list):
        sizes = np.array([10, 3, 9, 4])

    pieces = SplitLongLinesDataset(Lines(torch.arange(n) for n in Lines.sizes), max_len=4)
    assert pieces.sizes.tolist() == [3, 3, 4, 3, 3, 3, 3, 4]
    assert torch.equal(torch.cat([pieces[i] for i in range(3)]), torch.arange(10))


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_epoch_share_per_language_matches_q(dest, alpha):
    task = make_task(dest, multilang_sampling_alpha=alpha)
    # keep the datasets referenced: their sizes are views into memory maps closed on deletion
    raw = [data_utils.load_indexed_dataset(str(dest / lang / "train"), task.dictionary) for lang in task.langs]
    tokens = [int(d.sizes.sum()) for d in raw]
    q = smoothed_probabilities(tokens, alpha)
    p = np.asarray(tokens) / sum(tokens)
    counts = epoch_lang_counts(task, epoch=1)
    share = counts / counts.sum()
    tolerance = 3 * np.sqrt(q * (1 - q) / counts.sum()) + 1.0 / counts.sum()
    assert np.all(np.abs(share - q) <= tolerance), (task.langs, share, q)
    if alpha < 1:  # smoothing moves mass from the largest to the smallest language
        assert share[np.argmin(p)] > p.min() and share[np.argmax(p)] < p.max()


def test_epochs_redraw_blocks_and_order_reproducibly(dest):
    task = make_task(dest)
    task.load_dataset("train", epoch=1)
    order1 = task.dataset("train").ordered_indices()
    task.load_dataset("train", epoch=2)
    order2 = task.dataset("train").ordered_indices()
    assert not np.array_equal(order1, order2)
    # the smallest language is up-sampled: epoch 2 draws other copies of its blocks
    again = make_task(dest)
    again.load_dataset("train", epoch=2)
    assert np.array_equal(again.dataset("train").ordered_indices(), order2)
    first_item = int(order2[0])
    for key in ("net_input.src_tokens", "target"):
        assert torch.equal(again.dataset("train")[first_item][key], task.dataset("train")[first_item][key])


def test_mask_whole_words_without_bpe(dest):
    task = make_task(dest, mask_whole_words=True, mask_prob=0.3)
    starts = task._word_starts.bool()
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    masked_pieces = inside_words = 0
    for i in range(0, len(dataset), 7):
        item = dataset[i]
        target = item["target"]
        selected = target.ne(task.dictionary.pad())
        # the original text: the target where selected, the unchanged input elsewhere
        is_start = starts[torch.where(selected, target, item["net_input.src_tokens"])]
        for j in range(1, len(target)):
            if not is_start[j]:  # a continuation piece shares its word's fate
                assert selected[j] == selected[j - 1], (i, j)
                inside_words += int(selected[j])
        masked_pieces += int(selected.sum())
    assert masked_pieces > 0 and inside_words > 0


def test_a_criterion_that_cannot_read_masked_samples_is_refused(dest):
    from fairseq.criterions.cross_entropy import CrossEntropyCriterionConfig
    from omegaconf import OmegaConf

    task = make_task(dest)
    with pytest.raises(ValueError, match="--criterion xlmr_masked_lm .*not 'cross_entropy'"):
        task.build_criterion(OmegaConf.structured(CrossEntropyCriterionConfig(_name="cross_entropy")))


def masked_share(task: XLMRMLMTask, split: str, epoch: int = 1) -> float:
    task.load_dataset(split, epoch=epoch)
    dataset = task.dataset(split)
    selected = tokens = 0
    for i in range(len(dataset)):
        target = dataset[i]["target"]
        selected += int(target.ne(task.dictionary.pad()).sum())
        tokens += len(target) - 2  # <s> and </s> are never targets
    return selected / tokens


def test_valid_splits_mask_at_the_schedules_last_rate(dest):
    """A mask-rate schedule (0.4 falling to 0.1) trains at its first rate and validates at its
    last, so that validation losses stay comparable along the run and with a 0.1-constant run."""
    scheduled = make_task(dest, mask_prob="0:0.4,1000:0.1")
    assert masked_share(scheduled, "train") == pytest.approx(0.4, abs=0.03)
    assert masked_share(scheduled, "valid") == pytest.approx(0.1, abs=0.02)
    constant = make_task(dest, mask_prob=0.1)
    assert masked_share(constant, "valid") == pytest.approx(masked_share(scheduled, "valid"), abs=1e-9)
