"""xlmr-prepare against races and kills, with real processes: one writer per DEST, no
orphan workers after a kill -9 of the main process, no damaged language trusted."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import prepare_args
from xlmr.preprocess import prepare
from xlmr_plugin.storage import layout
from xlmr_plugin.storage.writer_lock import LOCK

PREPARE = str(Path(sys.executable).with_name("xlmr-prepare"))


def _start(corpus: Path, dest: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([PREPARE, *prepare_args(corpus, dest, "--langs", "en,de,fr", "--workers", "2", *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_a_second_writer_is_refused_while_the_first_runs(corpus_dir, tmp_path):
    dest = tmp_path / "dest"
    first = _start(corpus_dir, dest)
    _wait_for(lambda: (dest / LOCK).exists() and (dest / LOCK).read_text().strip())
    second = subprocess.run([PREPARE, *prepare_args(corpus_dir, dest, "--langs", "el", "--vocab-size", "500")],
                            capture_output=True, text=True)
    assert second.returncode == 2
    assert f"{dest} is being written by xlmr-prepare (pid {first.pid}" in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr[-3000:]


def test_kill_9_of_the_main_process_takes_its_workers_with_it(corpus_dir, tmp_path):
    dest = tmp_path / "dest"
    main = _start(corpus_dir, dest)
    _wait_for(lambda: len(_children(main.pid)) >= 2)
    workers = _children(main.pid)
    os.kill(main.pid, signal.SIGKILL)
    main.wait()
    _wait_for(lambda: not any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers), timeout=5)
    rerun = _start(corpus_dir, dest)
    assert rerun.wait(timeout=600) == 0, rerun.stderr[-3000:]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_a_finished_language_with_a_damaged_file_is_redone(xlmr_data, corpus_dir, tmp_path, capsys):
    dest = tmp_path / "dest"
    vocab = ["--spm-model", str(xlmr_data / "spm.model"), "--dict", str(xlmr_data / "dict.txt")]
    argv = [str(corpus_dir), str(dest), "--langs", "el,mk", *vocab, "--workers", "2"]
    assert prepare.main(argv) == 0
    whole = Path(f"{layout.split_prefix(dest, 'el', 'valid')}.bin").read_bytes()
    Path(f"{layout.split_prefix(dest, 'el', 'valid')}.bin").write_bytes(b"")
    capsys.readouterr()
    assert prepare.main(argv) == 0
    summary = capsys.readouterr().out
    assert [line for line in summary.splitlines() if line.startswith("el ")][0].rstrip().endswith("done now")
    assert Path(f"{layout.split_prefix(dest, 'el', 'valid')}.bin").read_bytes() == whole
