"""A command that publishes a directory never deletes what it did not write: it replaces
its own earlier output, and refuses a directory holding anything else, naming it.
Through the real xlmr-export-hf / xlmr-import-hf on a checkpoint of a real fairseq-train."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_utils import REPO, TINY, fairseq_cli, small_dest
from xlmr_plugin.storage.atomic import ForeignFilesError, publish_directory, staging_directory

pytest.importorskip("transformers")


def command(name: str, *args: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([str(Path(sys.executable).with_name(name)), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def contents(directory: Path) -> dict[str, str]:
    """Every file under `directory` with the hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ckpts(xlmr_data, tmp_path_factory) -> Path:
    """A save dir of fairseq-train: checkpoint_1_1.pt, checkpoint_1_2.pt, checkpoint_last.pt."""
    data = small_dest(xlmr_data, tmp_path_factory.mktemp("data"), {"el": None})
    save = tmp_path_factory.mktemp("ckpts")
    fairseq_cli("fairseq-train", [data, *TINY, "--batch-size", "8", "--max-update", "2", "--disable-validation",
                                  "--save-interval-updates", "1", "--save-dir", save])
    return save


@pytest.fixture(scope="module")
def exported(ckpts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "model"
    proc = command("xlmr-export-hf", ckpts / "checkpoint_last.pt", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_export_into_the_checkpoint_folder_deletes_nothing(ckpts, tmp_path):
    folder = shutil.copytree(ckpts, tmp_path / "ckpts")
    before = contents(folder)
    proc = command("xlmr-export-hf", folder / "checkpoint_last.pt", folder)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{folder} holds files this command does not write (checkpoint_1_1.pt, checkpoint_1_2.pt, " \
           "checkpoint_last.pt)" in proc.stderr
    assert contents(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["ckpts"]  # no staging directory left


def test_export_keeps_a_users_file_and_replaces_its_own_output(ckpts, exported, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = command("xlmr-export-hf", ckpts / "checkpoint_last.pt", out)
    assert proc.returncode == 2 and "(notes.txt)" in proc.stderr
    assert contents(out) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}

    again = command("xlmr-export-hf", ckpts / "checkpoint_last.pt", exported)  # its own earlier output
    assert again.returncode == 0, again.stderr[-3000:]
    assert (exported / "config.json").is_file() and (exported / "model.safetensors").is_file()


def test_import_keeps_a_users_file(exported, tmp_path):
    out = tmp_path / "release"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = command("xlmr-import-hf", exported, out)
    assert proc.returncode == 2 and "(notes.txt)" in proc.stderr
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert command("xlmr-import-hf", exported, tmp_path / "fresh").returncode == 0
    assert sorted(os.listdir(tmp_path / "fresh")) == ["dict.txt", "model.pt", "sentencepiece.bpe.model"]


def test_import_without_config_json_fails_first_naming_it(exported, tmp_path):
    hf_dir = shutil.copytree(exported, tmp_path / "hub")
    (hf_dir / "config.json").unlink()
    proc = command("xlmr-import-hf", hf_dir, tmp_path / "release")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().endswith(f"error: {hf_dir}: no config.json (an XLM-R directory of Hugging Face "
                                        "ships one)")
    assert "Traceback" not in proc.stderr and not (tmp_path / "release").exists()


def test_publish_directory_replaces_only_its_own_names(tmp_path):
    final = tmp_path / "out"
    for content in ("old", "new"):
        tmp = staging_directory(final)
        (tmp / "a.txt").write_text(content)
        publish_directory(tmp, final)
    assert sorted(os.listdir(tmp_path)) == ["out"] and (final / "a.txt").read_text() == "new"

    (final / "b.txt").write_text("somebody's")
    tmp = staging_directory(final)
    (tmp / "a.txt").write_text("newer")
    with pytest.raises(ForeignFilesError, match=r"out holds files this command does not write \(b.txt\)"):
        publish_directory(tmp, final)
    assert sorted(os.listdir(tmp_path)) == ["out"] and (final / "a.txt").read_text() == "new"
