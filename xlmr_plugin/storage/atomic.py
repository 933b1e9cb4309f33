"""Writing so that an interrupted run never leaves a file or shard that looks complete,
and publishing so that a command never deletes what it did not write."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator


class ForeignFilesError(FileExistsError):
    """A directory to publish holds files the publishing command did not write; nothing was changed."""


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary name beside `final`; rename it to `final` only on success."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def durable_file(final: Path, tmp: Path) -> Iterator[BinaryIO]:
    """Yield `tmp` open for writing; on success fsync it and rename it to `final`, on any
    failure (a full disk) remove it. Without the fsync a crash soon after the rename
    can leave `final` empty on disk; with it, `final` is the old file or the whole new one."""
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(Path(final).parent)


def _fsync_directory(path: Path) -> None:
    """Make a rename in `path` survive a crash (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_directory(final: Path) -> Path:
    """A fresh, empty directory beside `final` to write it under, for `publish_directory`."""
    final = Path(os.path.abspath(final))
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_directory(tmp: Path, final: Path, earlier: Iterable[str] = ()) -> None:
    """Replace directory `final` by `tmp`. A crash in between leaves `final` absent
    (redone by the next run), never a mix of old and new files.

    Only a `final` that holds nothing but names `tmp` also has (an earlier run of the same
    command) or names in `earlier` (what the command's own record says it wrote there) is
    replaced: anything else in it is somebody's, so `final` is left as it is, `tmp` is
    removed and ForeignFilesError names what is in the way.
    """
    final = Path(os.path.abspath(final))
    _refuse_foreign(tmp, final, set(earlier))
    old = tmp.with_name(tmp.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _refuse_foreign(tmp: Path, final: Path, earlier: set) -> None:
    """Raise (removing `tmp`) unless replacing `final` deletes only names `tmp` has or `earlier` lists."""
    if not final.exists() and not final.is_symlink():
        return
    if final.is_symlink() or not final.is_dir():
        problem = "is a file or a link, not a directory: nothing was written; give a new or empty directory"
    else:
        foreign = sorted(set(os.listdir(final)) - set(os.listdir(tmp)) - earlier)
        if not foreign:
            return
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        problem = (f"holds files this command does not write ({shown}): nothing was written; "
                   "give a new or empty directory, or move them away")
    shutil.rmtree(tmp)
    raise ForeignFilesError(f"{final} {problem}")
