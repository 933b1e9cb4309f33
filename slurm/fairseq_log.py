"""Reading what fairseq-train logs: its stats records, saved checkpoints, model size and data.

The one place that knows fairseq's log lines, so that `xlmr-train --status` and the study
report read a run the same way, whatever ``--log-format`` it used (json, or simple, which
fairseq also writes for tqdm when its output is not a terminal, as in a SLURM job). A line is
``<time> | INFO | <name> | <message>`` (fairseq-train) or ``[<time>][<name>][INFO] - <message>``
(fairseq-hydra-train). A stats record is logged under its tag as the logger's name:
``train_inner`` every ``--log-interval`` updates, ``train`` at the end of an epoch, the
subset's name (``valid``) after each validation; its message is

    json:    {"epoch": 1, "valid_loss": "9.12", ...}   (train and valid keys carry the tag)
    simple:  epoch 001:     10 / 57 loss=9.5, wps=1520, num_updates=10, ...   (train_inner)
             epoch 001 | valid on 'valid' subset | loss 9.12 | ...            (train, valid)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Union

_LINE = re.compile(r"(?:\| [A-Z]+ \| (?P<name>[^|\s]+) \| |\]\[(?P<hydra_name>[^\]]+)\]\[[A-Z]+\] - )(?P<message>.*)$")
_TAG = re.compile(r"^\w+$")  # stats are logged under their tag; modules log under dotted names
_INNER = re.compile(r"^epoch (\d+): +\d+ / \d+ (.*)$")  # simple format, train_inner
_EPOCH = re.compile(r"^epoch (\d+)$")
_SUBSET = re.compile(r"^\S+ on '[^']*' subset$")  # the validation prefix of the simple format
_SAVED = re.compile(r"Saved checkpoint (\S+) \(epoch (\d+) @ (\d+) updates")
_PARAMETERS = re.compile(r"num\. shared model params: ([\d,]+)")
_DATA = re.compile(r"'task': \{'_name': '[^']*', 'data': '([^']*)'")
# how a run says why it stopped: a Python exception's last line ("ValueError: ...",
# "torch.OutOfMemoryError: ..."), argparse's or SLURM's "<program>: error: ...", or a record logged at ERROR
_FAILURE = re.compile(r"^(?:[\w.]+(?:Error|Exception)\b|\S+: error: )|\| ERROR \| ")
_EXITED = re.compile(r"Exited with exit code -?\d+$")  # srun's note that a task failed: the cause is elsewhere

Stats = dict[str, Union[float, str]]


@dataclass(frozen=True)
class Record:
    """One stats record: keys without the ``<tag>_`` prefix of the json format, numbers as floats."""

    tag: str
    stats: Stats


@dataclass(frozen=True)
class SavedCheckpoint:
    path: str
    epoch: int
    updates: int


@dataclass(frozen=True)
class ModelSize:
    """The parameters fairseq counts in the model (``num. shared model params``)."""

    parameters: int


@dataclass(frozen=True)
class TrainingData:
    """The task's data folder(s) in the config fairseq logs at start."""

    path: str


@dataclass(frozen=True)
class Failure:
    """A line that says why the run (or the program starting it) failed, as written."""

    line: str


Event = Union[Record, SavedCheckpoint, ModelSize, TrainingData, Failure]


def parse_line(line: str) -> Optional[Event]:
    """What one log line says, or None for a line this reader has no use for."""
    if m := _SAVED.search(line):
        return SavedCheckpoint(m.group(1), int(m.group(2)), int(m.group(3)))
    if m := _PARAMETERS.search(line):
        return ModelSize(int(m.group(1).replace(",", "")))
    if m := _DATA.search(line):
        return TrainingData(m.group(1))
    if _FAILURE.search(line) and not _EXITED.search(line):
        return Failure(line.strip())
    m = _LINE.search(line)
    if m is None:
        return None
    tag = m.group("name") or m.group("hydra_name")
    stats = _stats(m.group("message").strip()) if _TAG.match(tag) else None
    if stats is None:
        return None
    prefix = f"{tag}_"
    return Record(tag, {(k[len(prefix):] if k.startswith(prefix) else k): _number(v) for k, v in stats.items()})


def events(lines: Iterable[str]) -> Iterator[Event]:
    """The events of a log's lines, in order."""
    for line in lines:
        if (event := parse_line(line)) is not None:
            yield event


def records(lines: Iterable[str], tag: Optional[str] = None) -> Iterator[Record]:
    """The stats records of a log's lines (those of ``tag`` only, if given), in order."""
    for event in events(lines):
        if isinstance(event, Record) and (tag is None or event.tag == tag):
            yield event


def last_failure(lines: Iterable[str]) -> Optional[str]:
    """The last line of ``lines`` (a log, a job's stderr) that says why something failed, or None."""
    failures = [event.line for event in events(lines) if isinstance(event, Failure)]
    return failures[-1] if failures else None


def _stats(message: str) -> Optional[dict]:
    """The raw key -> value pairs of a record's message in either format, else None."""
    if message.startswith("{"):
        try:
            stats = json.loads(message)
        except json.JSONDecodeError:
            return None
        return stats if isinstance(stats, dict) else None
    if m := _INNER.match(message):
        pairs = [cell.partition("=") for cell in m.group(2).split(", ")]
        return {"epoch": m.group(1), **{key.strip(): value for key, sep, value in pairs if sep}}
    cells = [cell.strip() for cell in message.split(" | ")]
    epoch = _EPOCH.match(cells[0])
    if epoch is None or len(cells) < 2:
        return None
    pairs = [cell.partition(" ") for cell in cells[1:] if not _SUBSET.match(cell)]
    return {"epoch": epoch.group(1), **{key: value for key, sep, value in pairs if sep}}


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
