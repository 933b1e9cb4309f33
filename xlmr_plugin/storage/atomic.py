"""Writing so that an interrupted run never leaves a file or shard that looks complete."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


def publish_directory(tmp: Path, final: Path) -> None:
    """Replace directory `final` by `tmp`. A crash in between leaves `final` absent
    (redone by the next run), never a mix of old and new files."""
    old = tmp.with_name(tmp.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
