"""The figures of xlmr-report: the paper's plots of each study, drawn with matplotlib.

- alpha: perplexity against α, one line for high- and one for low-resource languages
  (the paper's figure 5 reads XNLI that way; at pretraining scale the trade-off shows
  first in the masked-LM perplexity of each group);
- curse / capacity: the core languages' perplexity against the number of languages,
  one line per study, so fixed and scaled width share the axes when both are given;
- vocab: bits per character (comparable across vocabularies) against vocabulary size;
- downstream: every `downstream_*` score against the study's x.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

PPL_LABEL = "validation perplexity\n(per masked token, geometric mean over languages)"
# (row key, legend) of the lines each study draws, and its y label
LINES = {
    "alpha": ([("ppl_high", "high-resource languages"), ("ppl_low", "low-resource languages"),
               ("ppl_all", "all languages")], PPL_LABEL),
    "curse": ([("ppl_core", "core languages, fixed width")], PPL_LABEL),
    "capacity": ([("ppl_core", "core languages, width scaled")], PPL_LABEL),
    "vocab": ([("bits_per_char", "all languages, parameters within 2%")],
              "validation loss (bits per character)\n(masked-token loss / characters per token)"),
}
GROUPS = {"curse": "languages", "capacity": "languages"}  # studies drawn on one figure


def _numeric(rows: list[dict]) -> bool:
    return all(isinstance(row["x"], (int, float)) for row in rows)


def _axes(x_label: str, y_label: str, title: str):
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def _draw(ax, rows: list[dict], key: str, label: str) -> bool:
    points = [(row["x"] if _numeric(rows) else i, row[key]) for i, row in enumerate(rows)
              if row.get(key) is not None]
    if not points:
        return False
    xs, ys = zip(*points)
    ax.plot(xs, ys, marker="o", label=label)
    for x, y in points:
        ax.annotate(f"{y:.0f}" if y >= 100 else f"{y:.3g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    return True


def figure_name(study: str) -> str:
    return GROUPS.get(study, study)


def plot_studies(name: str, studies: list[tuple[str, list[dict], str]], out: Path) -> list[Path]:
    """One figure `name`.png for the studies that share it (study, rows, x label), and
    `name`_downstream.png when their runs logged scores; returns the files written."""
    y_label = LINES.get(studies[0][0], ([], PPL_LABEL))[1]
    runs = sum(len(rows) for _, rows, _ in studies)
    updates = sorted({row["updates"] for _, rows, _ in studies for row in rows if row["updates"]})
    title = f"{name}: {runs} runs, {'/'.join(f'{u:.0f}' for u in updates)} updates"
    x_label = "languages in training" if name == "languages" else " / ".join(dict.fromkeys(x for _, _, x in studies))
    fig, ax = _axes(x_label, y_label, title)
    ax.margins(y=0.15)  # room for the labels above and below the points
    drawn = []
    for study, rows, _ in studies:
        lines = LINES.get(study, ([("ppl_all", "all languages")], PPL_LABEL))[0]
        for key, label in lines:
            members = rows[0].get(key.replace("ppl_", "langs_"))
            if key in ("ppl_high", "ppl_low") and members:  # how many languages each line averages
                label += f" ({len(members)}: p_i {'≥' if key == 'ppl_high' else '<'} 1/{rows[0]['languages']})"
            if key == "ppl_core" and rows[0].get("core_langs"):
                label = label.replace("core languages", f"core languages ({', '.join(rows[0]['core_langs'])})")
            drawn.append(_draw(ax, rows, key, label))
        if study in ("curse", "capacity"):
            for row in rows:  # the width of each run, under its point
                if row.get("ppl_core") is not None:
                    ax.annotate(f"width {row.get('width')}", (row["x"], row["ppl_core"]), textcoords="offset points",
                                xytext=(0, -12), ha="center", fontsize=7, color="grey")
        if not _numeric(rows):
            ax.set_xticks(range(len(rows)), [str(row["x"]) for row in rows], rotation=20)
    if name == "vocab":
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
    if name in ("alpha", "vocab", "languages"):  # ticks at the runs' values: 0.1 0.3 ..., 32k 64k ..., 3 7 15 25
        xs = sorted({row["x"] for _, rows, _ in studies for row in rows})
        ax.set_xticks(xs, [f"{x / 1000:g}k" if x >= 1000 else f"{x:g}" for x in xs])
    ax.legend(fontsize=8)
    written = [_save(fig, out / f"{name}.png")] if any(drawn) else []
    scores = sorted({k for _, rows, _ in studies for row in rows for k in row if k.startswith("downstream_")})
    if scores:
        fig, ax = _axes(x_label, "downstream score (as the probe logs it)", f"{name}: downstream probes")
        for study, rows, _ in studies:
            for key in scores:
                _draw(ax, rows, key, f"{key[len('downstream_'):]} ({study})")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / f"{name}_downstream.png"))
    return written
