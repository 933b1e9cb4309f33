"""How often an epoch draws each language, read at the update the epoch starts at.

- ``--language-sampling alpha`` (XLM-R): q_i ∝ p_i^α, with ``--multilang-sampling-alpha`` a
  constant or a schedule over updates (``data/update_schedule.py``).
- ``--language-sampling unimax`` (Chung et al. 2023): a token budget spread uniformly over the
  languages, each capped at ``--unimax-max-epochs`` passes over its own tokens; the budget is
  ``--unimax-budget-tokens`` or, when 0, what the run can consume: max_update x update_freq x
  world size x the tokens of a step (batch_size x tokens_per_sample, or max_tokens), an upper
  bound, so that the cap holds for the tokens actually trained on.
- ``--language-joins sw:5000,yo:5000``: a language has q = 0 until its update, then takes its
  share (mmBERT adds languages in stages); the rule above runs over the joined languages.

The table an epoch draws by is logged whenever it differs from the last one logged.
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from fairseq.dataclass import ChoiceEnum

from xlmr_plugin.data.language_resampling_dataset import (
    blocks_per_language,
    log_sampling_table,
    smoothed_probabilities,
    unimax_allocation,
)
from xlmr_plugin.data.update_schedule import UpdateSchedule, pairs, parse_update

logger = logging.getLogger(__name__)

ALPHA, UNIMAX = "alpha", "unimax"
SAMPLING_CHOICES = ChoiceEnum([ALPHA, UNIMAX])


def parse_joins(text: str, langs: Sequence[str]) -> Dict[str, int]:
    """``--language-joins`` as {language: update}; languages not named are there from update 0."""
    if not text.strip():
        return {}
    joins: Dict[str, int] = {}
    for lang, update in pairs(text, "--language-joins"):
        if lang not in langs:
            raise ValueError(f"--language-joins: {lang!r} is not a training language ({','.join(langs)})")
        if lang in joins:
            raise ValueError(f"--language-joins: {lang} is named twice")
        joins[lang] = parse_update(update, "--language-joins")
    if all(joins.get(lang, 0) > 0 for lang in langs):
        raise ValueError(f"--language-joins: every language joins after update 0 ({text}): "
                         "the first epoch would have no data")
    return joins


def run_budget(cfg) -> float:
    """The tokens a run can consume: max_update x update_freq x world size x tokens of a step."""
    steps = [n for n in (cfg.batch_size and cfg.batch_size * cfg.tokens_per_sample, cfg.max_tokens) if n]
    if not cfg.max_update or not steps or len(set(cfg.update_freq)) != 1:
        raise ValueError("--language-sampling unimax: give --unimax-budget-tokens, or --max-update with "
                         "--batch-size or --max-tokens and one --update-freq to derive it from")
    return float(cfg.max_update * cfg.update_freq[0] * cfg.distributed_world_size * min(steps))


class LanguageSampling:
    """The sampling rule of a run (α schedule or UniMax, and joins), checked at startup."""

    def __init__(self, cfg, langs: Sequence[str]):
        self.mode = str(cfg.language_sampling)
        self.alpha = UpdateSchedule.parse(cfg.multilang_sampling_alpha, "--multilang-sampling-alpha", low=0.0)
        self.joins = parse_joins(cfg.language_joins, langs)
        self.max_epochs = float(cfg.unimax_max_epochs)
        self.budget = 0.0
        if self.mode == UNIMAX:
            if self.max_epochs <= 0:
                raise ValueError(f"--unimax-max-epochs must be > 0, got {cfg.unimax_max_epochs}")
            if cfg.unimax_budget_tokens < 0:
                raise ValueError(f"--unimax-budget-tokens must be >= 0, got {cfg.unimax_budget_tokens}")
            self.budget = float(cfg.unimax_budget_tokens) or run_budget(cfg)
        self._logged: Optional[Tuple] = None

    def probabilities(self, langs: Sequence[str], tokens: Sequence[int], update: int) -> Tuple[np.ndarray, str]:
        """q over ``langs`` at ``update`` (0 for languages not joined yet) and the rule's name."""
        joined = np.array([self.joins.get(lang, 0) <= update for lang in langs])
        sizes = np.asarray(tokens, dtype=np.float64)[joined]
        q = np.zeros(len(langs))
        if self.mode == UNIMAX:
            allocation = unimax_allocation(sizes, self.budget, self.max_epochs)
            if allocation.sum() < self.budget:
                logger.warning("unimax: %.4g tokens of budget but %g epochs of every language make %.4g: "
                               "languages will be repeated more than %g times", self.budget, self.max_epochs,
                               allocation.sum(), self.max_epochs)
            q[joined] = allocation / allocation.sum()
            name = f"unimax={self.max_epochs:g} epochs over {self.budget:.6g} tokens"
        else:
            q[joined] = smoothed_probabilities(sizes, self.alpha(update))
            name = f"alpha={self.alpha(update):.6g}"
        waiting = [f"{lang}@{self.joins[lang]}" for lang, j in zip(langs, joined) if not j]
        return q, name + (f", not joined yet: {','.join(waiting)}" if waiting else "")

    def draw(self, langs: Sequence[str], tokens: Sequence[int], blocks: Sequence[int], shards: Sequence[str],
             update: int, epoch: int, epoch_blocks: int = 0) -> List[int]:
        """Blocks of each language in the epoch that starts at ``update``; logs the table when it changed."""
        q, name = self.probabilities(langs, tokens, update)
        drawn = blocks_per_language(q, blocks, epoch_blocks)
        table = (name, tuple(langs), tuple(shards), tuple(blocks), tuple(drawn))
        if table != self._logged:
            log_sampling_table(langs, tokens, q, blocks, drawn, f"{name}, from update {update} (epoch {epoch})",
                               shards)
            self._logged = table
        return drawn
