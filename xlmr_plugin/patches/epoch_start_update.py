"""Tell the task the update an epoch's data starts at, and give it back its saved state on resume.

Data schedules (``--multilang-sampling-alpha 0:0.7,...``, ``--mask-prob``, ``--language-joins``)
are read when an epoch's data is built, at the update the epoch starts at. fairseq 0.12 gives
the task no update count when it loads that data, and, although the trainer saves
``task.state_dict()`` in every checkpoint as ``task_state``, only ``load_model_ensemble``
reads it back: a resumed run would rebuild the epoch it stopped in from the checkpoint's
update, not from the one the epoch started at, and train on other data than the
uninterrupted run.

Now ``Trainer.get_train_iterator`` first calls ``task.begin_epoch_data(epoch, num_updates)``
where the task has it, and ``Trainer.load_checkpoint`` restores ``task_state`` into the task
whenever it restores the update count (not under ``--reset-optimizer``).
"""
import zipfile

import torch
from fairseq.trainer import Trainer


def saved_task_state(path: str) -> dict:
    """The checkpoint's task state; a zip checkpoint is memory-mapped, its tensors left unread."""
    state = torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path))
    return state.get("task_state") or {}


def install() -> None:
    """Wrap the two Trainer methods once (re-importing the plugin must not stack wrappers)."""
    if getattr(Trainer.get_train_iterator, "_xlmr_epoch_start", False):
        return
    get_train_iterator, load_checkpoint = Trainer.get_train_iterator, Trainer.load_checkpoint

    def get_train_iterator_at_update(self, epoch, *args, **kwargs):
        begin_epoch_data = getattr(self.task, "begin_epoch_data", None)
        if begin_epoch_data is not None:
            begin_epoch_data(epoch, self.get_num_updates())
        return get_train_iterator(self, epoch, *args, **kwargs)

    def load_checkpoint_with_task_state(self, filename, reset_optimizer=False, *args, **kwargs):
        extra_state = load_checkpoint(self, filename, reset_optimizer, *args, **kwargs)
        if extra_state is not None and not reset_optimizer and self.task is not None:
            self.task.load_state_dict(saved_task_state(filename))
        return extra_state

    get_train_iterator_at_update._xlmr_epoch_start = True
    Trainer.get_train_iterator = get_train_iterator_at_update
    Trainer.load_checkpoint = load_checkpoint_with_task_state
