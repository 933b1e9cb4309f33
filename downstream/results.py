"""The results table every downstream command ends with: one row per test language, the
average over them, as ``results.md`` and ``results.json`` (written atomically)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from xlmr_plugin.storage.atomic import atomic_path


def with_average(scores: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``scores`` (language -> metric -> value) plus an ``avg`` row, each metric's mean."""
    rows = {lang: dict(metrics) for lang, metrics in scores.items()}
    metrics = sorted({m for row in rows.values() for m in row})
    rows["avg"] = {m: sum(row[m] for row in scores.values()) / len(scores) for m in metrics if all(m in row for row in scores.values())}
    return rows


def write_results(out: Path, title: str, scores: Mapping[str, Mapping[str, float]], meta: Mapping[str, object]) -> dict:
    """Write ``out/results.md`` and ``out/results.json``; return what was written.

    ``meta`` (protocol, checkpoint, command, ...) goes into the JSON and under the title.
    Scores are percentages, printed with one decimal as in the paper's tables."""
    out.mkdir(parents=True, exist_ok=True)
    rows = with_average(scores)
    metrics = list(rows["avg"])
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["", "| language | " + " | ".join(metrics) + " |", "| --- |" + " --- |" * len(metrics)]
    lines += [f"| {lang} | " + " | ".join(f"{row[m]:.1f}" for m in metrics) + " |" for lang, row in rows.items()]
    record = {"title": title, **meta, "scores": rows}
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return record
