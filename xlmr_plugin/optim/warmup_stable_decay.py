"""Learning-rate scheduler ``warmup_stable_decay``: linear warmup, a long constant phase, and
a decay of settable shape over the last ``--decay-fraction`` of the run (the trapezoid of
Hägele et al. 2024 and mmBERT).

fairseq's ``tri_stage`` has the three phases but decays only exponentially, to
``final_lr_scale`` and never to 0, and ``polynomial_decay`` has no stable phase. Shapes,
with t the share of the decay done:

- ``linear``: 1 - t
- ``cosine``: (1 + cos(pi t)) / 2
- ``1-sqrt``: 1 - sqrt(t), which Hägele et al. find matches cosine-to-the-end at any length

lr(u) = lr * u / warmup in the warmup (0 at update 0, as ``polynomial_decay``), lr in the
stable phase, end + (lr - end) * shape(t) in the decay, and end after total_num_update.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II

DECAY_SHAPES = {
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
    "1-sqrt": lambda t: 1.0 - math.sqrt(t),
}
DECAY_SHAPE_CHOICES = ChoiceEnum(list(DECAY_SHAPES))


@dataclass
class WarmupStableDecayConfig(FairseqDataclass):
    warmup_updates: int = field(default=0, metadata={"help": "updates of linear warmup from 0 to --lr"})
    decay_fraction: float = field(
        default=0.2, metadata={"help": "share of --total-num-update spent decaying, at its end"}
    )
    decay_shape: DECAY_SHAPE_CHOICES = field(
        default="linear", metadata={"help": "linear: 1-t; cosine: (1+cos(pi t))/2; 1-sqrt: 1-sqrt(t)"}
    )
    end_learning_rate: float = field(default=0.0, metadata={"help": "learning rate at the end of the decay"})
    total_num_update: Optional[float] = field(
        default=None, metadata={"help": "updates until the end of the decay; default: --max-update"}
    )
    max_update: int = II("optimization.max_update")
    lr: List[float] = II("optimization.lr")


@register_lr_scheduler("warmup_stable_decay", dataclass=WarmupStableDecayConfig)
class WarmupStableDecaySchedule(FairseqLRScheduler):
    """Warmup, stable, decay; the lr is a function of the update alone, so resume is exact."""

    def __init__(self, cfg: WarmupStableDecayConfig, optimizer):
        super().__init__(cfg, optimizer)
        if len(cfg.lr) != 1:
            raise ValueError(f"--lr-scheduler warmup_stable_decay takes one --lr, got {cfg.lr}")
        total = cfg.total_num_update or cfg.max_update
        if not total or total <= 0:
            raise ValueError("--lr-scheduler warmup_stable_decay needs --total-num-update (or --max-update) > 0")
        if not 0 < cfg.decay_fraction <= 1:
            raise ValueError(f"--decay-fraction must lie in (0, 1], got {cfg.decay_fraction}")
        if not 0 <= cfg.end_learning_rate <= cfg.lr[0]:
            raise ValueError(f"--end-learning-rate must lie in [0, --lr {cfg.lr[0]}], got {cfg.end_learning_rate}")
        self.peak, self.end = cfg.lr[0], cfg.end_learning_rate
        self.total = int(total)
        self.decay_start = self.total - int(round(cfg.decay_fraction * self.total))
        if cfg.warmup_updates < 0 or cfg.warmup_updates > self.decay_start:
            raise ValueError(f"--warmup-updates {cfg.warmup_updates} must lie in [0, {self.decay_start}], where "
                             f"the decay of the last --decay-fraction {cfg.decay_fraction} of {self.total} starts")
        self.warmup = cfg.warmup_updates
        self.shape = DECAY_SHAPES[str(cfg.decay_shape)]
        self.optimizer.set_lr(self.lr_at(0))

    def lr_at(self, num_updates: int) -> float:
        if num_updates < self.warmup:
            return self.peak * num_updates / self.warmup
        if num_updates < self.decay_start:
            return self.peak
        if num_updates >= self.total:
            return self.end
        t = (num_updates - self.decay_start) / (self.total - self.decay_start)
        return self.end + (self.peak - self.end) * self.shape(t)

    def step(self, epoch, val_loss=None):
        """The lr does not change at epoch boundaries."""
        super().step(epoch, val_loss)
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        self.optimizer.set_lr(self.lr_at(num_updates))
        return self.optimizer.get_lr()
