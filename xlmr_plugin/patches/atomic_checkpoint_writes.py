"""Make every checkpoint file fairseq writes complete or absent, also its copies.

fairseq saves the first checkpoint of a save (e.g. ``checkpoint_1_10.pt``) under
``NAME.tmp`` and renames it, but then *copies* it to ``checkpoint_last.pt`` and
``checkpoint_best.pt`` in place (``PathManager.copy``). A full disk or a kill during
that copy leaves a truncated ``checkpoint_last.pt``, and the next start fails on it
(``PytorchStreamReader failed reading zip archive``) although ``checkpoint_1_10.pt`` is
whole. A save that fails (a full disk at the first save) also leaves its ``NAME.tmp``.

Both writes now go through ``storage.atomic.durable_file``: ``NAME.tmp`` beside the
target, fsync, rename; on failure the ``.tmp`` is removed and the error raised. Remote
paths (fairseq's iopath handlers) and ``--write-checkpoints-asynchronously`` keep
fairseq's own code.
"""
import shutil
from pathlib import Path
from typing import Callable

import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from xlmr_plugin.storage.atomic import durable_file

TMP_SUFFIX = ".tmp"  # fairseq's own name for a checkpoint being written


def _local(path: str) -> bool:
    return PathManager.supports_rename(path)


def save_checkpoint_file(original: Callable) -> Callable:
    """``checkpoint_utils.torch_persistent_save``, writing local files with `durable_file`."""

    def torch_persistent_save(obj, filename, async_write: bool = False):
        if async_write or not _local(filename):
            return original(obj, filename, async_write=async_write)
        # one attempt: fairseq retries into the same, half-written handle
        with durable_file(Path(filename), Path(f"{filename}{TMP_SUFFIX}")) as f:
            torch.save(obj, f)

    torch_persistent_save._xlmr_atomic = True
    return torch_persistent_save


def copy_file(original: Callable) -> staticmethod:
    """``PathManager.copy``, replacing a local destination only by a whole copy."""

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        # overwrite: fairseq always passes True, and its local copy ignores it too
        if not (_local(src_path) and _local(dst_path)):
            return original(src_path, dst_path, overwrite=overwrite)
        with open(src_path, "rb") as src, durable_file(Path(dst_path), Path(f"{dst_path}{TMP_SUFFIX}")) as dst:
            shutil.copyfileobj(src, dst)
        return True

    copy._xlmr_atomic = True
    return staticmethod(copy)


def install() -> None:
    """Replace both functions once (re-importing the plugin must not stack wrappers)."""
    if not getattr(checkpoint_utils.torch_persistent_save, "_xlmr_atomic", False):
        checkpoint_utils.torch_persistent_save = save_checkpoint_file(checkpoint_utils.torch_persistent_save)
    if not getattr(PathManager.copy, "_xlmr_atomic", False):
        PathManager.copy = copy_file(PathManager.copy)
