"""One writer per output folder at a time.

An exclusive ``flock`` on a file in the folder: a second writer is refused at once with
the holder's name, and the kernel drops the lock when the holder dies, ``kill -9``
included, so that a crash never leaves a folder locked. Processes forked by the holder
share its lock until they exit too.
"""
from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK = ".lock"


class FolderLocked(RuntimeError):
    """Another live process writes the folder."""


@contextmanager
def one_writer(folder: Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block, or raise FolderLocked naming who holds it."""
    fd = os.open(Path(folder) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().strip() or "another process"
            raise FolderLocked(f"{folder} is being written by {holder}: wait for it to end, "
                               "or write to another folder") from None
        f.truncate(0)
        f.write(f"{command} (pid {os.getpid()} on {socket.gethostname()})\n")
        f.flush()
        yield
