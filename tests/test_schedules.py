"""Data schedules of xlmr_mlm: α over updates, UniMax, languages joining, the mask rate.

Real fairseq-train runs on real text: the logged tables against the schedules, a resume
inside an epoch whose schedule changed against the uninterrupted run, UniMax's cap in a
real epoch, and bad schedules refused at startup naming their flag.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plugin_utils import TINY, fairseq_cli, json_records, sampling_tables, small_dest
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities, unimax_allocation
from xlmr_plugin.data.update_schedule import UpdateSchedule
from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig, XLMRMLMTask

ALPHA = "step:0:1.0,5:0.3"
MASK = "0:0.3,20:0.1"
JOINS = {"de": 12}
LR = ["--lr-scheduler", "warmup_stable_decay", "--warmup-updates", "5", "--decay-fraction", "0.5",
      "--decay-shape", "1-sqrt", "--total-num-update", "40"]
EPOCH_BLOCKS = 150  # about 8 updates of 1024 tokens: five epochs in 40 updates


# ---- the schedule syntax

def test_a_schedule_is_constant_piecewise_linear_or_stepped():
    linear = UpdateSchedule.parse("0:0.7,100:0.5,200:0.3", "--x")
    assert [linear(u) for u in (0, 50, 100, 150, 200, 10_000)] == pytest.approx([0.7, 0.6, 0.5, 0.4, 0.3, 0.3])
    stepped = UpdateSchedule.parse("step:0:0.7,100:0.5,200:0.3", "--x")
    assert [stepped(u) for u in (0, 99, 100, 199, 200, 10_000)] == [0.7, 0.7, 0.5, 0.5, 0.3, 0.3]
    late = UpdateSchedule.parse("100:0.5,200:0.3", "--x")  # the first value holds before its update
    assert late(0) == late(100) == 0.5
    for plain in (0.3, "0.3", "step:0.3"):
        assert UpdateSchedule.parse(plain, "--x")(0) == UpdateSchedule.parse(plain, "--x")(123_456) == 0.3



def test_a_schedules_mean_is_what_a_run_sees_on_average():
    anneal = UpdateSchedule.parse("0:0.3,800:0.15", "--mask-prob")  # the demo's share: 0.8 N
    assert anneal.mean(1000) == pytest.approx(0.8 * 0.225 + 0.2 * 0.15, abs=1e-3)
    assert UpdateSchedule.parse("step:0:0.7,50:0.3", "--x").mean(100) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        anneal.mean(0)


@pytest.mark.parametrize("text,message", [
    ("0:0.7,200:0.5,100:0.3", "the updates of a schedule must increase"),
    ("0:0.7,100:0.7,100:0.3", "the updates of a schedule must increase"),
    ("0:0.7,-5:0.3", "updates must be >= 0"),
    ("0:0.7,100:-0.1", "every value must lie in [0.0, inf]"),
    ("0:0.7,10.5:0.3", "updates are whole numbers"),
    ("0:0.7,100", "expected KEY:VALUE"),
    ("0:abc", "'abc' is not a number"),
])
def test_a_bad_schedule_names_its_flag(text, message):
    with pytest.raises(ValueError) as error:
        UpdateSchedule.parse(text, "--multilang-sampling-alpha", low=0.0)
    assert str(error.value).startswith("--multilang-sampling-alpha: ") and message in str(error.value)


# ---- UniMax

def test_unimax_spreads_the_budget_and_caps_each_language():
    # smallest first: 6000/3 = 2000 > 2 x 100 -> 200; 5800/2 = 2900 > 2 x 1000 -> 2000; the rest, 3800
    assert unimax_allocation([1000, 100, 10_000], 6000, 2).tolist() == [2000, 200, 3800]
    rng = np.random.default_rng(0)
    for _ in range(200):
        tokens = rng.integers(1, 10**6, size=rng.integers(1, 12)).astype(float)
        budget, cap = float(rng.integers(1, 10**7)), float(rng.choice([0.5, 1, 2, 4]))
        allocation = unimax_allocation(tokens, budget, cap)
        assert np.all(allocation <= cap * tokens * (1 + 1e-12))  # never more than `cap` passes
        assert allocation.sum() == pytest.approx(min(budget, cap * tokens.sum()))
        uncapped = allocation < cap * tokens * (1 - 1e-9)
        if uncapped.any():  # the uncapped share equally, and no capped language gets more than them
            assert np.ptp(allocation[uncapped]) <= 1e-6 * allocation[uncapped].max()
            assert np.all(allocation <= allocation[uncapped].max() * (1 + 1e-9))


def test_unimax_never_repeats_a_language_more_than_its_cap_in_a_real_epoch(xlmr_data):
    blocks_per_epoch, cap = 600, 0.5
    task = XLMRMLMTask.setup_task(XLMRMLMConfig(
        data=str(xlmr_data), tokens_per_sample=64, seed=7, train_subset="train", language_sampling="unimax",
        unimax_max_epochs=cap, unimax_budget_tokens=blocks_per_epoch * 64, epoch_blocks=blocks_per_epoch))
    for epoch in (1, 2):
        task.load_dataset("train", epoch=epoch)
        dataset = task.dataset("train")
        itr = task.get_batch_iterator(dataset, max_sentences=64, seed=7, epoch=epoch, disable_iterator_cache=True)
        seen = np.zeros(len(task.langs), dtype=int)
        for sample in itr.next_epoch_itr(shuffle=True):
            seen += np.bincount(sample["lang_id"].numpy(), minlength=len(task.langs))
        blocks = np.array([len(task._lang_cache[("train", lang)][1]) for lang in task.langs])
        tokens = np.array([task.train_tokens[lang] for lang in task.langs])
        assert seen.sum() == pytest.approx(blocks_per_epoch, abs=len(task.langs))
        assert np.all(seen <= cap * blocks), (task.langs, seen, blocks)  # repeated at most `cap` times
        capped = cap * tokens < blocks_per_epoch * 64 / len(tokens)  # the small languages hit the cap
        assert capped.any() and np.all(seen[capped] >= 0.8 * cap * tokens[capped] / 64)


def test_unimax_budget_is_derived_from_the_run_and_logged(xlmr_data, tmp_path):
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None, "ja": 120, "en": 600})
    updates, batch, cap = 10, 16, 0.5
    log = fairseq_cli("fairseq-train", [
        data, *TINY, "--batch-size", batch, "--max-update", updates, "--disable-validation", "--no-save",
        "--save-dir", tmp_path / "ckpt", "--language-sampling", "unimax", "--unimax-max-epochs", cap])
    budget = updates * batch * 64
    (table,) = sampling_tables(log)  # one shard each, one rule: logged once
    assert table["rule"] == f"unimax={cap:g} epochs over {budget} tokens"
    rows = table["rows"]
    tokens = np.array([rows[lang]["tokens"] for lang in sorted(rows)])
    q = np.array([rows[lang]["q"] for lang in sorted(rows)])
    assert q == pytest.approx(unimax_allocation(tokens, budget, cap) / budget, abs=1e-4)
    for lang, row in rows.items():  # blocks the run draws of a language: at most `cap` passes over it
        assert updates * batch * row["q"] <= cap * row["blocks"], lang
    assert rows["el"]["q"] * budget == pytest.approx(cap * rows["el"]["tokens"], rel=1e-3)  # el is capped


# ---- a run across schedule changes, and its resume

@pytest.fixture(scope="module")
def scheduled(xlmr_data, tmp_path_factory):
    """40 updates straight (four short epochs), and 7 updates into the second epoch then resumed to 40."""
    out = tmp_path_factory.mktemp("scheduled")
    data = small_dest(xlmr_data, out / "data", {"el": None, "ja": 120, "de": 60})
    args = [data, *TINY, *LR, "--max-tokens", "1024", "--disable-validation", "--epoch-blocks", EPOCH_BLOCKS,
            "--multilang-sampling-alpha", ALPHA,
            "--mask-prob", MASK, "--language-joins", ",".join(f"{k}:{v}" for k, v in JOINS.items())]
    straight = fairseq_cli("fairseq-train", [*args, "--max-update", "40", "--save-dir", out / "a"])
    first_epoch = sum(r["epoch"] == 1 for r in json_records(straight, "train_inner"))
    stop = first_epoch + 7
    fairseq_cli("fairseq-train", [*args, "--max-update", str(stop), "--save-dir", out / "b"])
    resumed = fairseq_cli("fairseq-train", [*args, "--max-update", "40", "--save-dir", out / "b"])
    return straight, resumed, stop


def epoch_starts(log: str) -> dict:
    """The update each epoch of a run started at: the last update of the epoch before."""
    starts = {1: 0}
    for r in json_records(log, "train_inner"):
        starts[int(r["epoch"]) + 1] = int(r["num_updates"])
    return starts


def test_the_logged_tables_follow_the_schedules_where_they_change(scheduled):
    straight, _, _ = scheduled
    starts = epoch_starts(straight)
    epochs = range(1, int(json_records(straight, "train_inner")[-1]["epoch"]) + 1)
    alpha = UpdateSchedule.parse(ALPHA, "--multilang-sampling-alpha")
    mask = UpdateSchedule.parse(MASK, "--mask-prob")
    tables = sampling_tables(straight)
    for table in tables:
        update = table["update"]
        assert update == starts[table["epoch"]]  # read where the epoch starts
        assert table["rule"].startswith(f"alpha={alpha(update):g}")
        rows = table["rows"]
        joined = [lang for lang in sorted(rows) if JOINS.get(lang, 0) <= update]
        q = smoothed_probabilities([rows[lang]["tokens"] for lang in joined], alpha(update))
        assert [rows[lang]["q"] for lang in joined] == pytest.approx(q, abs=1e-4)
        for lang in set(rows) - set(joined):
            assert rows[lang]["q"] == 0 and rows[lang]["drawn"] == 0 and f"{lang}@{JOINS[lang]}" in table["rule"]
    # logged at the first epoch and at each epoch whose rule changed, and only there
    rule = {e: (alpha(starts[e]), sorted(lang for lang in tables[0]["rows"] if JOINS.get(lang, 0) <= starts[e]))
            for e in epochs}
    changed = [e for e in epochs if e == 1 or rule[e] != rule[e - 1]]
    assert [t["epoch"] for t in tables] == changed and len(changed) >= 3 and changed[-1] < epochs[-1]
    logged = re.findall(r"mask rate (\S+), from update (\d+) \(epoch (\d+)\)", straight)
    changed = [e for e in epochs if e == 1 or mask(starts[e]) != mask(starts[e - 1])]
    assert [int(epoch) for _, _, epoch in logged] == changed and len(changed) >= 3 and changed[-1] < epochs[-1]
    for rate, update, epoch in logged:
        assert int(update) == starts[int(epoch)] and float(rate) == pytest.approx(mask(int(update)), rel=1e-5)


def test_the_lr_follows_warmup_stable_decay(scheduled):
    straight, _, _ = scheduled
    total, warmup, decay_start = 40, 5, 20
    for record in json_records(straight, "train_inner"):
        u = record["num_updates"]
        expected = 1e-3 * (u / warmup if u < warmup else 1.0 if u < decay_start
                           else 1 - np.sqrt((u - decay_start) / (total - decay_start)))
        assert record["lr"] == pytest.approx(expected, rel=1e-5, abs=1e-12), u


def test_a_resume_inside_a_changed_epoch_reproduces_the_uninterrupted_run(scheduled):
    straight, resumed, stop = scheduled
    full, tail = json_records(straight, "train_inner"), json_records(resumed, "train_inner")
    assert "Loaded checkpoint" in resumed and tail[0]["num_updates"] == stop + 1 and tail[0]["epoch"] == 2
    # the checkpoint (update `stop`) is past de's join and at another mask rate: rebuilt from
    # there, epoch 2 would differ; rebuilt from the update it started at, it is the same
    start = epoch_starts(straight)[2]
    mask = UpdateSchedule.parse(MASK, "--mask-prob")
    assert stop > max(JOINS.values()) > start and mask(stop) != mask(start)
    assert [(r["loss"], r["lr"], r["gnorm"]) for r in full[stop:]] == [(r["loss"], r["lr"], r["gnorm"]) for r in tail]
    assert [t["epoch"] for t in sampling_tables(resumed)] == [2, 3]
    assert sampling_tables(resumed)[0]["update"] == start


# ---- bad schedules stop the start

@pytest.mark.parametrize("extra,message", [
    (["--multilang-sampling-alpha", "0:0.7,200:0.5,100:0.3"], "--multilang-sampling-alpha: the updates"),
    (["--multilang-sampling-alpha", "0:0.7,100:-0.5"], "--multilang-sampling-alpha: every value must lie in"),
    (["--mask-prob", "0:0.3,100:1.2"], "--mask-prob: every value must lie in [0.0, 1.0]"),
    (["--mask-prob", "0:0.3,100:0"], "--mask-prob: every rate must lie in (0, 1)"),
    (["--language-joins", "sw:100"], "--language-joins: 'sw' is not a training language (el,ja)"),
    (["--language-joins", "el:10,ja:20"], "--language-joins: every language joins after update 0"),
    (["--language-sampling", "unimax", "--unimax-max-epochs", "0"], "--unimax-max-epochs must be > 0"),
])
def test_a_bad_schedule_stops_the_start_naming_its_flag(xlmr_data, tmp_path, extra, message):
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None, "ja": 50})
    cmd = [str(Path(sys.executable).with_name("fairseq-train")), str(data), *map(str, TINY), "--max-tokens", "1024",
           "--max-update", "2", "--save-dir", str(tmp_path / "ckpt"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in log, log[-3000:]
    assert "train_inner" not in log and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
