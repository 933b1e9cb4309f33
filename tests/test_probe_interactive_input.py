"""fairseq-interactive fill-mask on input nobody checked: a line that is not UTF-8 and a
line longer than the model's positions are named by their line number and answered, and
the lines after them are answered as they would be alone."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_utils import REPO
from probe_utils import probe_model

LONG = "<mask> " + "Die Stadt liegt am Rande des Berges. " * 270 + "<mask>"  # 10,000 characters, 5,000 pieces
LINES = [b"Die Stadt liegt am <mask> des Berges.", b"caf\xe9 <mask> latin-1", LONG.encode(), b"The <mask> of the city."]


@pytest.fixture(scope="module")
def trained(xlmr_data, tmp_path_factory):
    return probe_model(xlmr_data, tmp_path_factory)


def interactive(dest: Path, ckpt: Path, stdin: bytes, stdin_errors: str = "surrogateescape") -> str:
    """stdout and stderr of fairseq-interactive reading ``stdin``, which Python decodes with
    ``stdin_errors`` (surrogateescape in the C locales, strict in the others)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONIOENCODING=f"utf-8:{stdin_errors}")
    proc = subprocess.run([
        str(Path(sys.executable).with_name("fairseq-interactive")), str(dest), "--user-dir", "xlmr_plugin",
        "--task", "xlmr_mlm", "--path", str(ckpt), "--bpe", "sentencepiece",
        "--sentencepiece-model", str(dest / "spm.model"), "--cpu", "--buffer-size", "2",
    ], input=stdin, cwd=REPO, env=env, capture_output=True, timeout=600)
    out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    assert proc.returncode == 0, out[-3000:]
    return out


def answers(out: str, kind: str) -> dict[int, str]:
    """The first ``S-``/``H-`` line of each input line, by fairseq's line id (from 0)."""
    found: dict[int, str] = {}
    for line in out.splitlines():
        if m := re.match(rf"{kind}-(\d+)\t(.*)$", line):
            found.setdefault(int(m.group(1)), m.group(2))
    return found


@pytest.mark.parametrize("stdin_errors", ["surrogateescape", "strict"])
def test_bad_lines_are_named_and_every_line_is_answered(trained, stdin_errors):
    dest, ckpt = trained
    out = interactive(dest, ckpt, b"\n".join(LINES) + b"\n", stdin_errors)
    sources, hypotheses = answers(out, "S"), answers(out, "H")
    assert sorted(sources) == sorted(hypotheses) == [0, 1, 2, 3]
    assert "input line 2 is not UTF-8 (byte 3, 0xe9): read with U+FFFD for its invalid bytes" in out
    cut = re.search(r"input line 3 takes (\d+) positions, more than the model's (\d+): "
                    r"only its first (\d+) pieces are read, dropping 1 <mask>", out)
    assert cut, out[-3000:]
    takes, positions, kept = map(int, cut.groups())
    assert takes > positions and kept == positions - 2 == len(sources[2].split(" "))  # <s> and </s> take two
    alone = interactive(dest, ckpt, LINES[3] + b"\n")
    assert hypotheses[3].split("\t")[1] == answers(alone, "H")[0].split("\t")[1]
