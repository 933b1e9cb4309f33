"""The rows of DEST/stats.tsv (written by `layout.write_stats`) and the summary table
at the end of `xlmr-prepare`."""
from __future__ import annotations

from typing import Optional, Sequence

from xlmr.preprocess.binarize import LanguageStats
from xlmr_plugin.data.language_resampling_dataset import smoothed_probabilities
from xlmr_plugin.recipes import RECIPES

PAPER_ALPHA = RECIPES["base"].multilang_sampling_alpha


def stats_rows(stats: Sequence[LanguageStats], alpha: float) -> list[dict]:
    """One row per language; p_i is the language's share of training tokens, the
    share the trainer's language sampling starts from."""
    train_tokens = [s.splits["train"].tokens for s in stats]
    q_paper = smoothed_probabilities(train_tokens, PAPER_ALPHA)
    q_alpha = smoothed_probabilities(train_tokens, alpha)
    total = sum(train_tokens)
    rows = []
    for s, q3, qa in zip(stats, q_paper, q_alpha):
        train, valid = s.splits["train"], s.splits["valid"]
        rows.append(
            {
                "lang": s.lang,
                "documents": train.documents + valid.documents,
                "lines": train.lines + valid.lines,
                "tokens": train.tokens + valid.tokens,
                "train_tokens": train.tokens,
                "valid_tokens": valid.tokens,
                "valid_documents": valid.documents,
                "p": train.tokens / total,
                f"q_alpha={PAPER_ALPHA:g}": float(q3),
                f"q_alpha={alpha:g}": float(qa),
            }
        )
    return rows


def summary_table(rows: list[dict], spm_lines: Optional[dict], status: dict) -> str:
    """A fixed-width table for the terminal."""
    columns = ["lang", "documents", "lines", "train_tokens", "valid_tokens", "p"]
    columns += [c for c in rows[0] if c.startswith("q_alpha")]
    header = columns + (["spm_lines"] if spm_lines else []) + ["status"]
    table = [header]
    for row in rows:
        cells = [_fmt(row[c], precision=4) for c in columns]
        if spm_lines:
            cells.append(str(spm_lines.get(row["lang"], "")))
        table.append(cells + [status[row["lang"]]])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _fmt(value, precision: int) -> str:
    return f"{value:.{precision}f}" if isinstance(value, float) else str(value)
