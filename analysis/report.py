"""`xlmr-report RUN_DIRS... --out DIR`: the runs of a study as a table, a JSON file and figures.

Each run directory is one of `xlmr-sweep` (or `xlmr-train`); the report reads its last
validation record. Runs are grouped by the study in their run.json (a plain `--grid`
sweep is grouped by its first axis), and each group gets

  DIR/results.md     one row per run, then validation perplexity per language
  DIR/results.json   the same numbers, and every language's loss in bits per token
  DIR/<study>.png    the paper's figure for the study (axes labelled, with units)
  DIR/downstream.png when the runs logged `downstream_*` validation fields

The schedules study has its own table and figure (analysis/schedules_report.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from xlmr.analysis import figures, schedules_report
from xlmr.analysis.run_results import RunResult, bits_per_character, read_run
from xlmr_plugin.storage.atomic import atomic_path

logger = logging.getLogger("xlmr-report")


def study_of(run: RunResult) -> str:
    return run.meta.get("study") or f"grid_{run.meta.get('x_label', 'run')}"


def summarise(run: RunResult) -> dict:
    """The numbers the study's table and figure show, for one run."""
    updates = run.valid.get("num_updates")
    row = {"run": run.name, "x": run.meta.get("x", run.name), "updates": None if updates is None else int(updates),
           "parameters": run.parameters, "languages": len(run.languages),
           "ppl_all": run.perplexity(run.languages)}
    for group, langs in run.resource_groups().items():
        row[f"ppl_{group}"] = run.perplexity(langs)
        row[f"langs_{group}"] = langs
    if "core_langs" in run.meta:
        row["ppl_core"] = run.perplexity(run.meta["core_langs"])
        row["core_langs"] = run.meta["core_langs"]
    for key in ("width", "ffn", "embeddings"):
        if key in run.meta:
            row[key] = run.meta[key]
    if run.meta.get("study") == "vocab":
        row["bits_per_char"] = bits_per_character(run)
    row.update(run.downstream())
    row["loss_bits"] = {lang: run.loss(lang) for lang in run.languages}
    row["p"] = {lang: run.shares.get(lang) for lang in run.languages}
    return row


# the table's columns per study, after the x value: (row key, header)
COLUMNS = {
    "alpha": [("ppl_high", "ppl high-resource"), ("ppl_low", "ppl low-resource"), ("ppl_all", "ppl all")],
    "curse": [("width", "width"), ("parameters", "parameters"), ("ppl_core", "ppl core"), ("ppl_all", "ppl all")],
    "capacity": [("width", "width"), ("parameters", "parameters"), ("ppl_core", "ppl core"), ("ppl_all", "ppl all")],
    "vocab": [("embeddings", "embeddings"), ("width", "width"), ("ffn", "FFN"), ("parameters", "parameters"),
              ("bits_per_char", "bits/char all"), ("ppl_all", "ppl/token all")],
}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 1e4 else f"{value:.4g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(study: str, rows: list[dict], x_label: str) -> str:
    downstream = sorted({k for row in rows for k in row if k.startswith("downstream_")})
    columns = [("x", x_label), ("updates", "updates")] + COLUMNS.get(study, COLUMNS["alpha"])
    columns += [(k, k) for k in downstream]
    lines = [f"## {study}", "", "| " + " | ".join(h for _, h in columns) + " |",
             "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k, _ in columns) + " |" for row in rows]
    if "langs_high" in rows[0] and all(row.get("langs_high") == rows[0]["langs_high"] for row in rows):
        lines += ["", "High-resource: p_i >= 1/N of the N languages' training tokens: "
                  + ", ".join(rows[0]["langs_high"]) + "; low-resource: " + ", ".join(rows[0]["langs_low"]) + "."]
    if "core_langs" in rows[0]:
        lines += ["", f"Core languages (in every run): {', '.join(rows[0]['core_langs'])}."]
    lines += ["", "ppl = 2^(mean over the languages of the validation loss in bits per masked token), "
              "the geometric mean of the languages' perplexities.", ""]
    widest = max(rows, key=lambda row: len(row["p"]))  # p_i among the most languages any run has
    langs = list(dict.fromkeys([*widest["loss_bits"], *(lang for row in rows for lang in row["loss_bits"])]))
    lines += [f"| language | p_i ({widest['languages']} languages) | " + " | ".join(f"{x_label} = {_cell(row['x'])}" for row in rows) + " |",
              "|" + " --- |" * (len(rows) + 2)]
    for lang in langs:
        p = widest["p"].get(lang)
        cells = [_cell(2 ** row["loss_bits"][lang]) if lang in row["loss_bits"] else "-" for row in rows]
        lines.append(f"| {lang} | {'-' if p is None else f'{p:.4f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(run_dirs: Sequence[Path], out: Path) -> dict:
    """Read the runs, write results.md, results.json and the figures to `out`; return the JSON."""
    by_study: dict[str, list[RunResult]] = defaultdict(list)
    for run_dir in run_dirs:
        run = read_run(Path(run_dir))
        by_study[study_of(run)].append(run)
    out.mkdir(parents=True, exist_ok=True)
    report, parts = {}, []
    shared: dict[str, list[tuple[str, list[dict], str]]] = defaultdict(list)  # figure -> its studies
    for study, runs in by_study.items():
        if study == schedules_report.STUDY:  # schedules x seeds, scored by the yardsticks: its own table and figure
            report[study] = schedules_report.write(sorted(runs, key=lambda r: r.name), out)
            parts.append(report[study].pop("markdown"))
            continue
        runs.sort(key=lambda r: (isinstance(r.meta.get("x"), str), r.meta.get("x", 0)))
        rows = [summarise(run) for run in runs]
        x_label = runs[0].meta.get("x_label", "run")
        report[study] = {"x_label": x_label, "runs": rows}
        parts.append(markdown(study, rows, x_label))
        shared[figures.figure_name(study)].append((study, rows, x_label))
    for name, studies in shared.items():
        files = [p.name for p in figures.plot_studies(name, studies, out)]
        for study, _, _ in studies:
            report[study]["figures"] = files
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    logger.info("report of %d runs: %s", sum(len(r) for r in by_study.values()), out)
    print("\n".join(parts))
    return report


def main(argv: Optional[list[str]] = None) -> int:
    # force: importing fairseq has set the root logger to DEBUG (matplotlib's font search would print)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)
    parser = argparse.ArgumentParser(prog="xlmr-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (each with train.log)")
    parser.add_argument("--out", type=Path, required=True, help="where results.md, results.json and PNGs go")
    args = parser.parse_args(argv)
    try:
        write_report(args.run_dirs, args.out)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
