"""The report of `--study schedules`: each schedule's mean over seeds, its spread and its margin
against the XLM-R recipe, a table of what each run actually spent, and one figure.

A run is read from its directory: `eval_ppl.json` (xlmr-eval-ppl: bits per masked token per
language, fixed 15% masking), `yardstick.json` (xlmr-yardstick: retrieval and transfer, %,
with the random-init floor), `usage.json` (CPU and wall seconds of training) and the last
validation record of train.log for the updates made and, with DATA's stats, which languages
are high-resource (a share p_i of at least 1/N of the N languages' tokens) and which low.
The spread over seeds is half their range; with one seed it is 0.
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from xlmr.analysis.run_results import RunResult  # noqa: E402
from xlmr.analysis.schedules_study import CONFIGS  # noqa: E402

STUDY = "schedules"
BASELINE = "xlmr"
# (row key, header): what is compared between schedules; bits: lower is better, %: higher
MEASURES = [("bits_all", "bits/masked token, mean over languages"), ("bits_low", "low-resource"),
            ("bits_high", "high-resource"), ("retrieval", "retrieval %"), ("transfer", "transfer %")]
HEADERS = {key: header for key, header in MEASURES}
HEADLINE = "bits_all"


def _read(run_dir: Path, name: str):
    path = run_dir / name
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no {name} (the run's job scores it after training: see "
                                f"{run_dir / 'scores.log'})")
    return json.loads(path.read_text(encoding="utf-8"))


def run_row(run: RunResult) -> dict:
    """One run's figures."""
    scores, yardstick, usage = (_read(run.run_dir, n) for n in ("eval_ppl.json", "yardstick.json", "usage.json"))
    bits = {lang: float(s["loss"]) for lang, s in scores.items() if lang != "all"}
    row = {"run": run.name, "config": run.meta["config"], "seed": run.meta["seed"],
           "updates": int(run.valid.get("num_updates", 0)), "planned_updates": run.meta["updates"],
           "cpu_s": sum(s["cpu_s"] for s in usage), "wall_s": sum(s["wall_s"] for s in usage),
           "threads": usage[-1]["threads"], "bits": bits, "bits_all": mean(bits.values()),
           "retrieval": yardstick["mean"]["retrieval"]["model"], "retrieval_floor": yardstick["mean"]["retrieval"]["floor"],
           "transfer": yardstick["mean"]["transfer"]["model"], "transfer_floor": yardstick["mean"]["transfer"]["floor"]}
    for group, langs in run.resource_groups().items():
        row[f"langs_{group}"] = langs
        row[f"bits_{group}"] = mean(bits[lang] for lang in langs) if langs else None
    row["p"] = {lang: run.shares.get(lang) for lang in bits}
    return row


def by_config(rows: list[dict]) -> dict[str, dict]:
    """Per schedule: seeds, then mean and spread of each measure and the margin against xlmr."""
    configs: dict[str, dict] = {}
    for config in [c for c in CONFIGS if any(r["config"] == c for r in rows)]:
        mine = [r for r in rows if r["config"] == config]
        entry = {"seeds": [r["seed"] for r in mine]}
        for key, _ in MEASURES:
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                entry[key] = {"mean": mean(values), "spread": (max(values) - min(values)) / 2}
        configs[config] = entry
    if BASELINE in configs:
        for config, entry in configs.items():
            if config == BASELINE:
                continue
            for key, _ in MEASURES:
                if key in entry and key in configs[BASELINE]:
                    entry[key]["vs_xlmr"] = entry[key]["mean"] - configs[BASELINE][key]["mean"]
    return configs


def winner(configs: dict[str, dict]) -> dict:
    """The schedule with the lowest headline measure, its margin over the runner-up and over xlmr, and
    whether that margin exceeds the two spreads over seeds together."""
    ranked = sorted(configs, key=lambda c: configs[c][HEADLINE]["mean"])
    best = configs[ranked[0]][HEADLINE]
    result = {"config": ranked[0], "measure": HEADLINE, "mean": best["mean"]}
    for label, other in (("runner_up", ranked[1] if len(ranked) > 1 else None), ("xlmr", BASELINE)):
        if other and other != ranked[0] and other in configs:
            theirs = configs[other][HEADLINE]
            margin = theirs["mean"] - best["mean"]
            seeds = min(len(configs[c]["seeds"]) for c in (ranked[0], other))
            result[label] = {"config": other, "margin": margin,  # None: one seed, no spread to compare with
                             "beyond_seed_spread": margin > best["spread"] + theirs["spread"] if seeds > 1 else None}
    return result


def _cell(entry: dict, key: str, points: bool) -> str:
    if key not in entry:
        return "-"
    value = entry[key]
    text = f"{value['mean']:.1f} ± {value['spread']:.1f}" if points else f"{value['mean']:.3f} ± {value['spread']:.3f}"
    if "vs_xlmr" in value:
        text += f" ({value['vs_xlmr']:+.1f})" if points else f" ({value['vs_xlmr']:+.3f})"
    return text


def markdown(rows: list[dict], configs: dict[str, dict], best: dict) -> str:
    first = rows[0]
    lines = [f"## {STUDY}", "",
             f"{first['planned_updates']:,} updates per run, {len(rows)} runs; mean ± half the range over seeds, "
             f"in brackets the difference to {BASELINE} (bits: lower is better; %: higher is better).", "",
             "| schedule | seeds | " + " | ".join(h for _, h in MEASURES) + " |", "|" + " --- |" * (len(MEASURES) + 2)]
    for config, entry in configs.items():
        cells = [_cell(entry, key, points=key in ("retrieval", "transfer")) for key, _ in MEASURES]
        lines.append(f"| {config} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", f"Random-init floor: retrieval {first['retrieval_floor']:.1f}%, transfer {first['transfer_floor']:.1f}%."]
    if "langs_high" in first:
        lines += [f"High-resource: {', '.join(first['langs_high'])}; low-resource: {', '.join(first['langs_low'])}."]
    text = f"Best by {HEADERS[best['measure']]}: **{best['config']}** ({best['mean']:.3f})"
    for label in ("xlmr", "runner_up"):
        if label in best and not (label == "runner_up" and best[label]["config"] == BASELINE):
            other = best[label]
            spread = {True: "beyond the seeds' spread", False: "within the seeds' spread", None: "one seed"}
            text += f"; {other['margin']:.3f} below {other['config']} ({spread[other['beyond_seed_spread']]})"
    lines += ["", text + ".", "", "Equal compute, run by run (CPU-minutes and wall minutes of training, one thread):", "",
              "| run | updates | CPU min | wall min | bits | retrieval % | transfer % |", "|" + " --- |" * 7]
    for row in rows:
        lines.append(f"| {row['run']} | {row['updates']:,} / {row['planned_updates']:,} | {row['cpu_s'] / 60:.1f} | "
                     f"{row['wall_s'] / 60:.1f} | {row['bits_all']:.3f} | {row['retrieval']:.1f} | {row['transfer']:.1f} |")
    langs = list(first["bits"])
    lines += ["", "Bits per masked token per language (mean over seeds):", "",
              "| language | p_i | " + " | ".join(configs) + " |", "|" + " --- |" * (len(configs) + 2)]
    for lang in sorted(langs, key=lambda lang: -(first["p"].get(lang) or 0)):
        p = first["p"].get(lang)
        cells = [f"{mean(r['bits'][lang] for r in rows if r['config'] == c):.3f}" for c in configs]
        lines.append(f"| {lang} | {'-' if p is None else f'{p:.4f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], configs: dict[str, dict], out: Path) -> Path:
    """Left: bits per masked token (all, low, high) per schedule; right: retrieval and transfer with
    their floors. Each seed is a small point, the mean a large one."""
    names = list(configs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for ax, keys, y_label in ((left, ("bits_all", "bits_low", "bits_high"), "bits per masked token (xlmr-eval-ppl, 15%)"),
                              (right, ("retrieval", "transfer"), "accuracy (%), xlmr-yardstick")):
        for offset, key in zip((-0.15, 0.0, 0.15), keys):
            label = HEADERS[key]
            xs = [i + offset for i, c in enumerate(names) if key in configs[c]]
            line = ax.plot(xs, [configs[c][key]["mean"] for c in names if key in configs[c]], "o", ms=7, label=label)[0]
            seeds = [(names.index(r["config"]) + offset, r[key]) for r in rows if r.get(key) is not None]
            ax.plot(*zip(*seeds), ".", ms=4, color=line.get_color(), alpha=0.6)
            if key in ("retrieval", "transfer"):
                ax.axhline(rows[0][f"{key}_floor"], ls="--", lw=1, color=line.get_color(), label=f"{label}, random init")
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_xlabel("schedule")
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"schedules at equal compute: {rows[0]['planned_updates']:,} updates per run, "
                 f"{len({r['seed'] for r in rows})} seed(s)", fontsize=10)
    fig.tight_layout()
    path = out / f"{STUDY}.png"
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write(runs: list[RunResult], out: Path) -> dict:
    """The study's JSON (rows, per schedule, the winner, figures) with its markdown under "markdown"."""
    rows = [run_row(run) for run in runs]
    configs = by_config(rows)
    best = winner(configs)
    return {"x_label": "schedule", "runs": rows, "configs": configs, "winner": best,
            "figures": [figure(rows, configs, out).name], "markdown": markdown(rows, configs, best)}
