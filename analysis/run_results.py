"""What one training run measured, read from its directory: the last validation record
of `train.log` (per-language loss, any `downstream_*` score), the parameter count
fairseq logged, and `run.json` (what the study varied), grouped the way the paper
reads them: high- against low-resource languages by their share p_i of the data,
the core languages of a multilinguality sweep, bits per character across vocabularies.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from xlmr.slurm import fairseq_log
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

NOT_LANGS = {"lang_mean"}


@dataclass
class RunResult:
    """One run: its settings and its last validation record (keys without `valid_`)."""

    run_dir: Path
    meta: dict
    valid: dict
    parameters: Optional[int]
    data: Optional[Path]
    shares: dict = field(default_factory=dict)  # p_i over the run's languages

    @property
    def name(self) -> str:
        return self.meta.get("name", self.run_dir.name)

    @property
    def languages(self) -> list[str]:
        langs = [k[len("loss_"):] for k in self.valid if k.startswith("loss_")]
        return sorted((lang for lang in langs if lang not in NOT_LANGS),
                      key=lambda lang: (-self.shares.get(lang, 0), lang))

    def loss(self, lang: str) -> float:
        """Validation loss of `lang`, bits per masked token (fairseq's base-2 loss)."""
        return float(self.valid[f"loss_{lang}"])

    def perplexity(self, langs: list[str]) -> Optional[float]:
        """Perplexity of the mean loss over `langs`: the geometric mean of their perplexities."""
        losses = [self.loss(lang) for lang in langs if f"loss_{lang}" in self.valid]
        return 2 ** (sum(losses) / len(losses)) if losses else None

    def resource_groups(self) -> dict[str, list[str]]:
        """High-resource: a share p_i of at least 1/N of the N languages' data; low: below."""
        langs = self.languages
        if not self.shares:
            return {}
        high = [lang for lang in langs if self.shares.get(lang, 0) >= 1 / len(langs)]
        return {"high": high, "low": [lang for lang in langs if lang not in high]}

    def downstream(self) -> dict[str, float]:
        """Every `downstream_<name>` validation field, whatever probe logged it."""
        return {k: float(v) for k, v in self.valid.items() if k.startswith("downstream_")}


def read_run(run_dir: Path) -> RunResult:
    run_dir = Path(run_dir)
    log = run_dir / "train.log"
    if not log.exists():
        raise FileNotFoundError(f"{run_dir}: no train.log (not a run directory of xlmr-train or xlmr-sweep)")
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    valid, parameters, data = {}, None, meta.get("data")
    for event in fairseq_log.events(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if isinstance(event, fairseq_log.Record) and event.tag == "valid":
            valid = event.stats
        elif isinstance(event, fairseq_log.ModelSize):
            parameters = event.parameters
        elif data is None and isinstance(event, fairseq_log.TrainingData):
            data = event.path
    if not valid:
        raise ValueError(f"{log}: no validation record yet (fairseq logs one per --validate-interval-updates)")
    result = RunResult(run_dir, meta, valid, parameters, Path(data) if data else None)
    result.shares = _shares(result.data, [k[5:] for k in valid if k.startswith("loss_") and k[5:] not in NOT_LANGS])
    return result


def _shares(data: Optional[Path], langs: list[str]) -> dict[str, float]:
    """p_i from DATA/stats.tsv, renormalised over the run's languages."""
    if data is None or not (data / layout.STATS).exists():
        logger.warning("no %s for languages %s: no high/low-resource grouping", layout.STATS, ",".join(langs))
        return {}
    stats = layout.read_stats(data)
    tokens = {lang: stats[lang]["train_tokens"] for lang in langs if lang in stats}
    total = sum(tokens.values())
    return {lang: t / total for lang, t in tokens.items()}


def characters_per_token(data: Path, langs: list[str]) -> dict[str, float]:
    """Characters per token of each language's valid split under DATA's vocabulary, to
    turn bits per token into bits per character, which compares across vocabularies."""
    from xlmr_plugin.storage.token_shards import read_tokens  # fairseq's import only where needed

    pieces = ["<s>", "<pad>", "\n", "<unk>"]
    with open(data / layout.DICT, encoding="utf-8") as f:
        pieces += [line.rsplit(" ", 1)[0] for line in f if line.strip()]
    lengths = np.array([1 if p == "\n" else len(p) for p in pieces] + [1], dtype=np.float64)
    out = {}
    for lang in langs:
        tokens = read_tokens(layout.split_prefix(data, lang, "valid"))
        counts = np.bincount(tokens, minlength=len(lengths))[: len(lengths)]
        out[lang] = float(counts @ lengths) / max(1, int(counts.sum()))
    return out


def bits_per_character(run: RunResult) -> Optional[float]:
    """Mean over the run's languages of loss (bits/token) / characters per token."""
    if run.data is None or not (run.data / layout.DICT).exists():
        return None
    langs = run.languages
    chars = characters_per_token(run.data, langs)
    values = [run.loss(lang) / chars[lang] for lang in langs if chars[lang] > 0]
    return sum(values) / len(values) if values else None
