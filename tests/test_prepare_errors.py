"""Bad input gets a clear error naming the file (and line); reruns skip finished
languages; an interrupted run leaves nothing that looks finished."""
import gzip
import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from xlmr.preprocess import prepare

TINY = ["el", "mk"]  # 158 and 129 lines of the shared corpus


def make_corpus(tmp_path: Path, corpus_dir: Path, langs=TINY) -> Path:
    out = tmp_path / "corpus"
    out.mkdir()
    for lang in langs:
        shutil.copy(corpus_dir / f"{lang}.txt", out / f"{lang}.txt")
    return out


def run(corpus: Path, dest: Path, *extra: str) -> int:
    return prepare.main([str(corpus), str(dest), "--vocab-size", "300", *extra])


def error_of(capsys) -> str:
    return capsys.readouterr().err


def test_missing_language_names_the_expected_file_and_what_exists(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    assert run(corpus, tmp_path / "d", "--langs", "el,xx") == 2
    err = error_of(capsys)
    assert f"{corpus / 'xx.txt'}: no such file" in err and "found: el, mk" in err


@pytest.mark.parametrize("content", [b"", b"\n \n\t\n"])
def test_empty_file_is_named(tmp_path, corpus_dir, capsys, content):
    corpus = make_corpus(tmp_path, corpus_dir)
    (corpus / "zz.txt").write_bytes(content)
    assert run(corpus, tmp_path / "d") == 2
    assert f"{corpus / 'zz.txt'}: no text" in error_of(capsys)


def test_invalid_utf8_names_file_and_line_or_is_skipped_and_counted(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    lines = (corpus / "el.txt").read_bytes().split(b"\n")
    lines[2] = b"caf\xe9 latin-1 here"
    (corpus / "el.txt").write_bytes(b"\n".join(lines))
    assert run(corpus, tmp_path / "d") == 2
    assert f"{corpus / 'el.txt'}:3: invalid UTF-8" in error_of(capsys)
    assert not (tmp_path / "d" / "el").exists()
    assert run(corpus, tmp_path / "d", "--skip-invalid") == 0
    assert "1 invalid lines skipped" in capsys.readouterr().out


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def with_bad_byte(data: bytes) -> bytes:
    """A stored (level 0) gzip member with one byte changed: it still decompresses, to text that
    is not UTF-8, and only the checksum at its end fails."""
    damaged = bytearray(data)
    damaged[len(damaged) // 2] = 0xFF
    return bytes(damaged)


def scrambled(data: bytes) -> bytes:
    """40 bytes in the middle of a compressed stream changed: it no longer decompresses."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x55 for b in data[middle:middle + 40]) + data[middle + 40:]


@pytest.mark.parametrize("name,pack,damage,found", [
    pytest.param("el.txt.gz", gzip.compress, truncated, "truncated compressed file (EOFError: Compressed file ended",
                 id="gz-truncated"),
    pytest.param("el.txt.xz", lzma.compress, truncated, "truncated compressed file (EOFError: Compressed file ended",
                 id="xz-truncated"),
    pytest.param("el.txt.gz", gzip.compress, scrambled, "corrupt compressed file (error: Error -3 while decompressing",
                 id="gz-scrambled"),
    pytest.param("el.txt.xz", lzma.compress, scrambled, "corrupt compressed file (LZMAError: Corrupt input data)",
                 id="xz-scrambled"),
    pytest.param("el.txt.gz", lambda text: gzip.compress(text, compresslevel=0), with_bad_byte,
                 "corrupt compressed file (BadGzipFile: CRC check failed", id="gz-bad-checksum"),
])
@pytest.mark.parametrize("skip_invalid", [False, True], ids=["strict", "skip-invalid"])
def test_a_damaged_compressed_file_is_named_with_the_line_where_reading_stopped(
        tmp_path, corpus_dir, capsys, name, pack, damage, found, skip_invalid):
    corpus = make_corpus(tmp_path, corpus_dir, ["mk"])
    text = (corpus_dir / "el.txt").read_bytes()
    (corpus / name).write_bytes(damage(pack(text)))
    assert run(corpus, tmp_path / "d", *(["--skip-invalid"] if skip_invalid else [])) == 2
    err = error_of(capsys)
    assert f"{corpus / name}:" in err and found in err and "invalid UTF-8" not in err, err
    if damage is truncated:  # the lines that decompress are read; reading stops in the next one
        readable = zlib.decompressobj(zlib.MAX_WBITS | 16) if name.endswith(".gz") else lzma.LZMADecompressor()
        line = readable.decompress(damage(pack(text))).count(b"\n") + 1
        assert f"{corpus / name}:{line}: truncated" in err


def test_the_same_language_twice_is_refused(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    with gzip.open(corpus / "el.txt.gz", "wb") as f:
        f.write((corpus / "el.txt").read_bytes())
    assert run(corpus, tmp_path / "d") == 2
    err = error_of(capsys)
    assert "'el' appears twice" in err and "el.txt.gz" in err
    (corpus / "el.txt.gz").unlink()
    assert run(corpus, tmp_path / "d", "--langs", "el,mk,el") == 2
    assert "names 'el' twice" in error_of(capsys)


@pytest.mark.parametrize("flag,value", [("--vocab-size", "0"), ("--vocab-size", "-8"), ("--alpha", "nan"),
                                        ("--alpha", "-0.5")])
def test_a_vocabulary_setting_that_cannot_work_is_refused_before_reading_the_corpus(
        tmp_path, corpus_dir, capsys, flag, value):
    corpus = make_corpus(tmp_path, corpus_dir)
    with pytest.raises(SystemExit) as stop:
        prepare.main([str(corpus), str(tmp_path / "d"), flag, value])
    assert stop.value.code == 2
    err = error_of(capsys)
    assert f"xlmr-prepare: error: {flag} must be" in err and f"got {float(value) if flag == '--alpha' else value}" in err
    assert not (tmp_path / "d").exists()


def test_compressed_files_give_the_same_shards(tmp_path, corpus_dir):
    plain = make_corpus(tmp_path, corpus_dir)
    packed = tmp_path / "packed"
    packed.mkdir()
    with gzip.open(packed / "el.txt.gz", "wb") as f:
        f.write((plain / "el.txt").read_bytes())
    with lzma.open(packed / "mk.txt.xz", "wb") as f:
        f.write((plain / "mk.txt").read_bytes())
    assert run(plain, tmp_path / "a") == 0
    assert run(packed, tmp_path / "b", "--spm-model", str(tmp_path / "a" / "spm.model"),
               "--dict", str(tmp_path / "a" / "dict.txt")) == 0
    for lang in TINY:
        for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
            assert (tmp_path / "a" / lang / name).read_bytes() == (tmp_path / "b" / lang / name).read_bytes()


def test_a_destination_with_another_dictionary_is_refused(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    assert run(corpus, tmp_path / "a") == 0
    assert run(corpus, tmp_path / "b", "--vocab-size", "250") == 0
    capsys.readouterr()
    # a given vocabulary that differs from the one DEST holds
    assert run(corpus, tmp_path / "a", "--spm-model", str(tmp_path / "b" / "spm.model"),
               "--dict", str(tmp_path / "b" / "dict.txt")) == 2
    err = error_of(capsys)
    assert str(tmp_path / "a" / "dict.txt") in err and "another vocabulary" in err
    # asking DEST for a vocabulary made with other settings
    assert run(corpus, tmp_path / "a", "--vocab-size", "250") == 2
    assert "vocab_size: 300 there, 250 now" in error_of(capsys)


def test_a_vocabulary_larger_than_the_corpus_supports_says_the_largest_that_works(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    assert run(corpus, tmp_path / "d", "--vocab-size", "250000") == 2
    err = error_of(capsys)
    assert "--vocab-size 250000 is more pieces than this corpus supports: the largest size that can work is" in err
    largest = int(err.rsplit(" ", 1)[1])
    assert 300 < largest < 250000


def test_a_bad_dictionary_line_is_named(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    assert run(corpus, tmp_path / "a") == 0
    bad = tmp_path / "bad.txt"
    lines = (tmp_path / "a" / "dict.txt").read_text(encoding="utf-8").splitlines()
    lines[4] = "no-count-here"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run(corpus, tmp_path / "b", "--spm-model", str(tmp_path / "a" / "spm.model"), "--dict", str(bad)) == 2
    assert f"{bad}:5: expected '<piece> <count>'" in error_of(capsys)


def test_a_rerun_skips_finished_languages_and_redoes_a_changed_one(tmp_path, corpus_dir, capsys):
    corpus = make_corpus(tmp_path, corpus_dir)
    dest = tmp_path / "d"
    assert run(corpus, dest) == 0
    stamps = {lang: (dest / lang / "train.bin").stat().st_mtime_ns for lang in TINY}
    capsys.readouterr()
    assert run(corpus, dest) == 0
    assert capsys.readouterr().out.count("already done") == 2
    assert stamps == {lang: (dest / lang / "train.bin").stat().st_mtime_ns for lang in TINY}
    with open(corpus / "mk.txt", "a", encoding="utf-8") as f:
        f.write("\nЕден нов документ на крајот.\n")
    assert run(corpus, dest) == 0
    out = capsys.readouterr().out
    assert out.count("already done") == 1 and out.count("done now") == 1
    assert (dest / "mk" / "train.bin").stat().st_mtime_ns != stamps["mk"]


def test_an_interrupted_run_leaves_no_shard_that_looks_finished(tmp_path, corpus_dir, xlmr_data):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = (corpus_dir / "en.txt").read_bytes()
    (corpus / "en.txt").write_bytes(text + b"\n" + text)  # about 3 s of binarizing on one core
    shutil.copy(corpus_dir / "el.txt", corpus / "el.txt")
    dest = tmp_path / "d"
    command = [sys.executable, "-m", "xlmr.preprocess.prepare", str(corpus), str(dest), "--workers", "1",
               "--spm-model", str(xlmr_data / "spm.model"), "--dict", str(xlmr_data / "dict.txt")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (dest / ".partial" / "en" / "train.bin").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before binarizing en"
        time.sleep(0.002)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (dest / "en").exists()  # the half-written shard stays under .partial/
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert (dest / "en" / "stats.json").exists() and not (dest / ".partial").exists()


def test_a_vocabulary_changed_behind_vocab_json_is_refused(corpus_dir, xlmr_data, tmp_path, capsys):
    dest = tmp_path / "dest"
    argv = [str(corpus_dir), str(dest), "--langs", "el,mk", "--vocab-size", "500", "--workers", "2"]
    assert prepare.main(argv) == 0
    (dest / "dict.txt").write_bytes((xlmr_data / "dict.txt").read_bytes())  # replaced, vocab.json kept
    capsys.readouterr()
    assert prepare.main(argv) == 2
    assert "changed after" in capsys.readouterr().err
