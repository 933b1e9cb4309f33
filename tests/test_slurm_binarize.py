"""xlmr-prepare --executor slurm on a real one-node cluster: an array task per language
and per piece of the larger ones, byte-identical to the local run; failed tasks are
resubmitted once, then reported with their log."""
import subprocess
from pathlib import Path

import pytest

from conftest import LANGS
from xlmr.preprocess import prepare
from xlmr.slurm import retrying_array
from xlmr.slurm.executor import slurm_executor
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

FIVE = [lang for lang in LANGS if lang != "el"]  # en, de, fr, ru, ja: 2.5 MB to 12 MB each
SLURM = ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "2", "--time", "10"]


def _outputs(dest: Path, langs: list[str]) -> dict[str, bytes]:
    return {f"{lang}/{p.name}": p.read_bytes() for lang in langs for p in sorted((dest / lang).iterdir())}


def test_array_matches_local_run(slurm_cluster, corpus_dir, xlmr_data, tmp_path, caplog):
    """The array's pieces, merged into training shards, are byte for byte the shards one
    local task per language writes: the shard cuts fall across the pieces' seams."""
    vocab = ["--spm-model", str(xlmr_data / "spm.model"), "--dict", str(xlmr_data / "dict.txt")]
    common = [str(corpus_dir), "--langs", ",".join(FIVE), *vocab, "--shard-tokens", "500000"]
    local = tmp_path / "local"
    assert prepare.main([common[0], str(local), *common[1:], "--workers", "2"]) == 0
    dest = tmp_path / "dest"
    # 6 MB pieces: en, ja and de in two pieces each, fr and ru whole: eight array tasks
    argv = [common[0], str(dest), *common[1:], "--shard-gb", str(6e6 / 2**30), *SLURM]
    caplog.set_level("INFO")
    assert prepare.main(argv) == 0
    assert "submitted array" in caplog.text and "8 tasks" in caplog.text
    assert sum("2 pieces" in m for m in caplog.messages) == 3
    assert len(list((dest / "en").glob("train*.idx"))) > 3
    assert _outputs(dest, FIVE) == _outputs(local, FIVE)
    assert not (dest / ".partial").exists()

    caplog.clear()
    assert prepare.main(argv) == 0  # finished languages are not redone
    assert "submitted array" not in caplog.text


def test_failed_task_is_resubmitted_once_then_reported(slurm_cluster, tmp_path):
    options = prepare.parse_args(["corpus", "dest", *SLURM]).executor
    executor = slurm_executor(options, tmp_path / "logs", "retry-test")
    mark = tmp_path / "failed-once"
    tasks = [
        retrying_array.Task("flaky", subprocess.check_output, (["bash", "-c", f"test -e {mark} || {{ touch {mark}; exit 3; }}; echo ok"],)),
        retrying_array.Task("steady", subprocess.check_output, (["echo", "fine"],)),
    ]
    assert retrying_array.run(executor, tasks, "retry", poll_s=0.5) == [b"ok\n", b"fine\n"]

    with pytest.raises(retrying_array.ArrayFailed) as failed:
        retrying_array.run(executor, [retrying_array.Task("broken", subprocess.check_output, (["false"],))], "fail", poll_s=0.5)
    message = str(failed.value)
    assert "1 task(s) failed twice" in message and "broken: raised" in message and "CalledProcessError" in message
    log = Path(message.split("log: ")[1].split()[0])
    assert log.is_file() and "returned non-zero exit status 1" in log.read_text()
