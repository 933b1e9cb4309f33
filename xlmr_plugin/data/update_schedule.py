"""Values that change with the training update: the one syntax of ``--multilang-sampling-alpha``,
``--mask-prob`` and ``--language-joins``.

- ``0.3``: a constant, as before schedules existed.
- ``0:0.7,100000:0.5,200000:0.3``: piecewise-linear between the points (mmBERT anneals its
  sampling temperature this way), constant before the first point and after the last.
- ``step:0:0.7,100000:0.5,200000:0.3``: each value holds from its update until the next point.

The data of an epoch is built when the epoch starts, so the task reads a schedule at the
update its epoch starts at; see ``XLMRMLMTask.begin_epoch_data``.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np

STEP = "step:"


def pairs(text: str, flag: str) -> List[Tuple[str, str]]:
    """``"a:1,b:2"`` as ``[("a", "1"), ("b", "2")]``; an item without one ':' is an error naming ``flag``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    split = [item.split(":") for item in items]
    bad = [item for item, parts in zip(items, split) if len(parts) != 2 or not all(p.strip() for p in parts)]
    if bad or not items:
        raise ValueError(f"{flag}: expected KEY:VALUE[,KEY:VALUE...], got {text!r}")
    return [(key.strip(), value.strip()) for key, value in split]


def parse_update(text: str, flag: str) -> int:
    """A non-negative whole update count."""
    try:
        update = int(text)
    except ValueError:
        raise ValueError(f"{flag}: updates are whole numbers, got {text!r}") from None
    if update < 0:
        raise ValueError(f"{flag}: updates must be >= 0, got {update}")
    return update


@dataclass(frozen=True)
class UpdateSchedule:
    """A value at each update: constant, piecewise-linear or stepped between (update, value) points."""

    updates: Tuple[int, ...]
    values: Tuple[float, ...]
    stepped: bool = False

    @classmethod
    def parse(cls, spec: Union[str, float, int], flag: str,
              low: Optional[float] = None, high: Optional[float] = None) -> "UpdateSchedule":
        """A schedule from its text (or a plain number); every value must lie in [low, high]."""
        text = str(spec).strip()
        stepped = text.startswith(STEP)
        body = text[len(STEP):] if stepped else text
        try:
            points = [(0, float(body))]
        except ValueError:
            points = [(parse_update(u, flag), _number(v, flag)) for u, v in pairs(body, flag)]
        updates = [u for u, _ in points]
        if any(b <= a for a, b in zip(updates, updates[1:])):
            raise ValueError(f"{flag}: the updates of a schedule must increase, got {text!r}")
        for _, value in points:
            if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
                bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise ValueError(f"{flag}: every value must lie in {bounds}, got {value:g} in {text!r}")
        return cls(tuple(updates), tuple(v for _, v in points), stepped)

    def __call__(self, update: int) -> float:
        if self.stepped:
            return self.values[max(0, int(np.searchsorted(self.updates, update, side="right")) - 1)]
        return float(np.interp(update, self.updates, self.values))

    def mean(self, updates: int) -> float:
        """The mean value over updates ``0 .. updates - 1``: what a run of that many updates sees on average."""
        if updates < 1:
            raise ValueError(f"a mean over {updates} updates")
        return float(np.mean([self(update) for update in range(updates)]))


def rescaled(spec: Union[str, float, int], factor: float, flag: str) -> Union[str, float, int]:
    """``spec`` with every update point multiplied by ``factor`` (rounded): a schedule written for
    a run of N updates, moved to a run of ``factor`` N at the same shares; a constant unchanged."""
    schedule = UpdateSchedule.parse(spec, flag)
    if ":" not in str(spec):  # a constant
        return spec
    updates = [round(u * factor) for u in schedule.updates]
    if any(b <= a for a, b in zip(updates, updates[1:])):
        raise ValueError(f"{flag}: {spec!r} cannot be moved to {factor:g} times its updates: two points would meet")
    body = ",".join(f"{u}:{v:g}" for u, v in zip(updates, schedule.values))
    return STEP + body if schedule.stepped else body


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a number") from None
