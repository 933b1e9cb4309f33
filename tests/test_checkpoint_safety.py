"""A full disk or a kill while fairseq-train saves never leaves a checkpoint that looks
whole and is not, and the next start resumes from what is whole, or says why it cannot.

Real fairseq-train on a tiny model; the full disk is a real one: a tmpfs a little
larger than one checkpoint, mounted in a private mount namespace (``unshare``), so the
test needs no root where user namespaces are enabled. What the run left there is copied
out before the namespace ends.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_utils import REPO, TINY, json_records, small_dest

SAVE_EVERY = 5
UPDATES = 15
FULL_DISK = """
size=$1 mnt=$2 out=$3
shift 3
mount -t tmpfs -o size="$size" tmpfs "$mnt" || exit 90
"$@"
rc=$?
cp -a "$mnt"/. "$out"/
exit $rc
"""


def train(save_dir: Path, data: Path) -> list[str]:
    """fairseq-train's command line: the tiny model, a checkpoint every SAVE_EVERY updates."""
    script = Path(sys.executable).with_name("fairseq-train")
    return [str(script), str(data), *TINY, "--max-tokens", "1024", "--disable-validation",
            "--save-interval-updates", str(SAVE_EVERY), "--max-update", str(UPDATES), "--save-dir", str(save_dir)]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def log_of(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def on_full_disk(size: int, out: Path, data: Path) -> subprocess.CompletedProcess:
    """fairseq-train saving to a tmpfs of `size` bytes; what it left there is copied to `out`."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a real full disk")
    mnt = out.with_name(out.name + ".mnt")
    mnt.mkdir()
    out.mkdir()
    proc = run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", FULL_DISK,
                "sh", str(size), str(mnt), str(out), *train(mnt, data)])
    if proc.returncode == 90:
        pytest.skip(f"cannot mount a tmpfs in a user namespace: {proc.stderr.strip()}")
    return proc


@pytest.fixture(scope="module")
def data(xlmr_data, tmp_path_factory) -> Path:
    return small_dest(xlmr_data, tmp_path_factory.mktemp("data"), {"el": None, "ja": 120})


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> tuple[Path, list[dict]]:
    """An uninterrupted run: its save dir and its per-update records."""
    save_dir = tmp_path_factory.mktemp("straight")
    proc = run(train(save_dir, data))
    assert proc.returncode == 0, log_of(proc)[-4000:]
    return save_dir, json_records(log_of(proc), "train_inner")


def saved_at(save_dir: Path, updates: int) -> Path:
    """fairseq's checkpoint_EPOCH_UPDATES.pt of `updates`."""
    [path] = save_dir.glob(f"checkpoint_*_{updates}.pt")
    return path


def checkpoint_size(save_dir: Path) -> int:
    return saved_at(save_dir, SAVE_EVERY).stat().st_size


def losses(records: list[dict], first: int) -> list[tuple]:
    return [(r["num_updates"], r["loss"], r["lr"]) for r in records if r["num_updates"] >= first]


def test_full_disk_while_copying_to_checkpoint_last_leaves_it_absent_and_the_run_resumes(straight, data, tmp_path):
    save_dir, records = straight
    size = checkpoint_size(save_dir)
    out = tmp_path / "ckpt"
    full = on_full_disk(size + size // 2, out, data)  # room for one checkpoint, not its copy
    assert full.returncode != 0 and "No space left on device" in log_of(full), log_of(full)[-4000:]
    assert sorted(p.name for p in out.iterdir()) == [f"checkpoint_1_{SAVE_EVERY}.pt"]

    resumed = run(train(out, data))
    log = log_of(resumed)
    assert resumed.returncode == 0, log[-4000:]
    assert f"{out / 'checkpoint_last.pt'} is missing; resuming from {out / f'checkpoint_1_{SAVE_EVERY}.pt'}" in log
    assert losses(json_records(log, "train_inner"), 1) == losses(records, SAVE_EVERY + 1)


def test_full_disk_at_the_first_save_leaves_no_tmp_file(straight, data, tmp_path):
    save_dir, _ = straight
    out = tmp_path / "ckpt"
    full = on_full_disk(checkpoint_size(save_dir) // 2, out, data)
    assert full.returncode != 0 and "No space left on device" in log_of(full), log_of(full)[-4000:]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kept", [0, 0.5])
def test_an_unreadable_checkpoint_last_is_named_and_the_newest_whole_one_resumes(straight, data, tmp_path, kept):
    """What a kill during fairseq's copy leaves: checkpoint_last.pt empty or cut short."""
    save_dir, records = straight
    out = shutil.copytree(save_dir, tmp_path / "ckpt")
    saved_at(out, UPDATES).unlink()  # the run was killed while copying this one
    last = out / "checkpoint_last.pt"
    os.truncate(last, int(last.stat().st_size * kept))

    resumed = run(train(out, data))
    log = log_of(resumed)
    assert resumed.returncode == 0, log[-4000:]
    assert f"{last} cannot be read" in log
    assert f"resuming from {saved_at(out, 2 * SAVE_EVERY)}" in log
    assert losses(json_records(log, "train_inner"), 1) == losses(records, 2 * SAVE_EVERY + 1)


def test_a_start_with_no_readable_checkpoint_stops_naming_it(straight, data, tmp_path):
    save_dir, _ = straight
    out = shutil.copytree(save_dir, tmp_path / "ckpt")
    for checkpoint in out.iterdir():
        os.truncate(checkpoint, 100)

    proc = run(train(out, data))
    assert proc.returncode != 0
    assert f"{out / 'checkpoint_last.pt'} cannot be read" in log_of(proc)
    assert f"no other checkpoint in {out} can be read" in log_of(proc)
    assert all(p.stat().st_size == 100 for p in out.iterdir())  # nothing started over
