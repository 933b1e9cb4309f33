"""The exponentially smoothed language distribution and the vocabulary sample."""
import json
from pathlib import Path

import numpy as np
import pytest

from xlmr.preprocess.sampling import allocate, choose_lines, sample_train_lines
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities


def test_alpha_flattens_the_distribution_as_in_the_paper():
    # 0.9^0.3 = 0.968886, 0.1^0.3 = 0.501187, normalised by their sum 1.470073
    assert smoothed_probabilities([900, 100], 0.3) == pytest.approx([0.659073, 0.340927], abs=1e-6)
    # sqrt(0.7), sqrt(0.2), sqrt(0.1) normalised
    assert smoothed_probabilities([7, 2, 1], 0.5) == pytest.approx([0.522879, 0.279491, 0.197630], abs=1e-6)


def test_alpha_one_is_proportional_and_alpha_zero_is_uniform():
    assert smoothed_probabilities([3, 1], 1.0) == pytest.approx([0.75, 0.25])
    assert smoothed_probabilities([1000, 1, 10], 0.0) == pytest.approx([1 / 3] * 3)


def test_a_language_without_data_is_never_drawn():
    assert smoothed_probabilities([10, 0, 10], 0.0) == pytest.approx([0.5, 0.0, 0.5])


@pytest.mark.parametrize("bad", [[], [0, 0], [1, -1]])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        smoothed_probabilities(bad, 0.3)


def test_allocate_sums_exactly_and_stays_within_one_of_the_target():
    q = smoothed_probabilities([73204, 32145, 158, 377], 0.3)
    counts = allocate(10001, q)
    assert counts.sum() == 10001
    assert np.all(np.abs(counts - q * 10001) < 1)


def test_down_sampling_draws_distinct_lines():
    idx, times = choose_lines(100, 30, np.random.default_rng(0))
    assert len(idx) == 30 and np.all(times == 1) and np.all(np.diff(idx) > 0) and idx.max() < 100


def test_up_sampling_repeats_every_line_evenly():
    idx, times = choose_lines(10, 25, np.random.default_rng(0))
    assert list(idx) == list(range(10))
    assert times.sum() == 25 and set(times.tolist()) == {2, 3} and (times == 3).sum() == 5


def test_sample_streams_only_training_lines_as_often_as_drawn(tmp_path: Path):
    src = tmp_path / "xx.txt"
    src.write_text("a1\na2\n\nb1\n\nc1\nc2\nc3\n\n", encoding="utf-8")
    # document 1 ("b1") is held out: training lines are a1 a2 c1 c2 c3 (indices 0-4)
    lines = list(sample_train_lines(src, np.array([1]), np.array([1, 4]), np.array([2, 1])))
    assert lines == ["a2", "a2", "c3"]


def test_vocabulary_sample_is_cut_to_the_memory_budget(corpus_dir, tmp_path, caplog):
    """--spm-memory-gb bounds the sample's bytes (SentencePiece holds a multiple of them)."""
    from xlmr.preprocess import prepare, vocabulary

    budget_gb = 0.002
    caplog.set_level("INFO")
    assert prepare.main([str(corpus_dir), str(tmp_path / "d"), "--langs", "el,mk,sv", "--vocab-size", "500",
                         "--workers", "2", "--spm-memory-gb", str(budget_gb)]) == 0
    given = json.loads((tmp_path / "d" / "vocab.json").read_text())["sentences"]
    assert "the sample was cut" in caplog.text and "peak memory of xlmr-prepare" in caplog.text
    sample_mb = float(caplog.text.split("SentencePiece: ", 1)[1].split(" MB", 1)[0])
    assert sample_mb * 1e6 <= budget_gb * 2**30 / vocabulary.SPM_BYTES_PER_SAMPLE_BYTE
    assert 0 < sum(given.values())
