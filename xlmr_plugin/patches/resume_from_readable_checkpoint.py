"""Resume from the newest readable checkpoint when ``checkpoint_last.pt`` cannot be used.

fairseq-train restores ``SAVE_DIR/checkpoint_last.pt`` by default. A truncated one (a
full disk or a kill while fairseq copied it there) stops every later start with a bare
``PytorchStreamReader failed reading zip archive`` or EOFError, although the checkpoint
it was copied from is whole. A missing one next to other checkpoints (that copy failed
at the first save) makes fairseq start over silently and overwrite them.

Now such a start logs a warning naming the file and resumes from the readable
checkpoint of SAVE_DIR saved at the most updates (read from its optimizer history), or
stops with an error naming the file when none can be read. Only the default
``--restore-file`` is concerned; ``--no-last-checkpoints`` keeps fairseq's behaviour.
"""
import logging
import pickle
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager
from omegaconf import DictConfig

logger = logging.getLogger(__name__)

DEFAULT_RESTORE = "checkpoint_last.pt"  # fairseq's default --restore-file
# what torch.load raises on a truncated, empty or foreign file
UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError, IndexError, TypeError, ValueError)


def saved_updates(path: Path) -> int:
    """The update count `path` was saved at; raises one of UNREADABLE if it cannot be read.

    A zip checkpoint is memory-mapped: only its pickled structure is read, not its
    tensors, so the check adds little to the full load that follows.
    """
    state = torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path))
    return int(state["optimizer_history"][-1]["num_updates"])


def newest_readable(candidates: List[Path]) -> Optional[Tuple[Path, int]]:
    """The candidate saved at the most updates (the latest written among equals), with that count."""
    readable = []
    for path in candidates:
        try:
            readable.append((saved_updates(path), path.stat().st_mtime, path))
        except UNREADABLE as e:
            logger.warning("%s cannot be read (%s)", path, e)
    if not readable:
        return None
    updates, _, path = max(readable)
    return path, updates


def fallback_checkpoint(cfg: DictConfig, suffix: str) -> Optional[Path]:
    """The checkpoint to resume from instead of an unusable checkpoint_last, None to let fairseq decide.

    Raises when checkpoint_last cannot be used and no other checkpoint can be read: starting
    over would overwrite them.
    """
    save_dir = Path(cfg.save_dir)
    if cfg.restore_file != DEFAULT_RESTORE or not PathManager.supports_rename(str(save_dir)):
        return None
    last = save_dir / f"checkpoint_last{suffix}.pt"
    if last.exists():
        try:
            saved_updates(last)
            return None
        except UNREADABLE as e:
            problem = f"{last} cannot be read ({e})"
    elif cfg.no_last_checkpoints:
        return None
    else:
        problem = f"{last} is missing"
    candidates = sorted(p for p in save_dir.glob(f"checkpoint*{suffix}.pt") if p != last)
    if not candidates and not last.exists():
        return None  # a first start
    newest = newest_readable(candidates)
    if newest is None:
        raise RuntimeError(f"{problem} and no other checkpoint in {save_dir} can be read: move the checkpoints "
                           "out of it to start over, or give --restore-file")
    path, updates = newest
    logger.warning("%s; resuming from %s, the newest readable checkpoint in %s (%d updates)",
                   problem, path, save_dir, updates)
    return path


@contextmanager
def restoring_from(cfg: DictConfig, path: Path, suffix: str) -> Iterator[None]:
    """fairseq's load_checkpoint with `path` as --restore-file for the duration of the call.

    fairseq appends `suffix` to a given restore file's name, so it is taken off here;
    --finetune-from-model (already used at the first start) would refuse a restore file.
    """
    saved = cfg.restore_file, cfg.finetune_from_model
    cfg.restore_file = str(path)[: len(str(path)) - len(f"{suffix}.pt")] + ".pt"
    cfg.finetune_from_model = None
    try:
        yield
    finally:
        cfg.restore_file, cfg.finetune_from_model = saved


def install() -> None:
    """Wrap fairseq's ``load_checkpoint`` once (re-importing the plugin must not stack wrappers)."""
    original = checkpoint_utils.load_checkpoint
    if getattr(original, "_xlmr_fallback", False):
        return

    def load_checkpoint(cfg, trainer, **passthrough_args):
        fallback = fallback_checkpoint(cfg, trainer.checkpoint_suffix)
        if fallback is None:
            return original(cfg, trainer, **passthrough_args)
        with restoring_from(cfg, fallback, trainer.checkpoint_suffix):
            return original(cfg, trainer, **passthrough_args)

    load_checkpoint._xlmr_fallback = True
    checkpoint_utils.load_checkpoint = load_checkpoint
