"""What checkpoint selection by downstream score costs: the probe's wall time against the
training time of the same fairseq-train run.

    python benchmarks/downstream_probe_overhead.py DEST [--updates 1000] [--interval 500]

DEST is prepared data (`make demo` leaves one in demo/data). The probe has the size
`xlmr-probe-data` gives by default (2000 English pairs to fit, 200 pairs to score in each
of 15 languages), made of real sentences of the corpus (`--corpus`, default ../shared/corpus/mono) with XNLI-like lengths (premise
≤ 25 words, hypothesis ≤ 12) and random labels: the cost depends on the number and length
of the sentences, not on what they say. The model, batch and optimiser are the demo recipe's
(`RECIPES["demo_paper"]`, the demo model under the paper's recipe): 2 layers, width 128, 64 x 64-token blocks per
update, on CPU, here without checkpoints and with JSON logs. On a GPU the training step
of a real model grows far more than the probe's forward pass, so the figure here is an
upper bound; the script also prints the ratio of probe to training FLOPs at the real
recipe's interval (base: 8192 x 512 tokens per update, validation every 10k updates).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xlmr.downstream.xnli import LABELS, Pair, write_sentence_prediction  # noqa: E402
from xlmr_plugin.recipes import RECIPES  # noqa: E402
from xlmr_plugin.storage import layout  # noqa: E402

DEMO, BASE = RECIPES["demo_paper"], RECIPES["base"]


def probe_recipe(updates: int, interval: int):
    """The demo recipe, validating (and probing) every `interval` updates only: no checkpoints,
    whose saves would add validations of their own, and the best checkpoint by the probe."""
    return replace(DEMO, max_update=updates, validate_interval_updates=interval, save_interval_updates=None,
                   keep_interval_updates=None, no_epoch_checkpoints=False, no_save=True, log_format="json",
                   best_checkpoint_metric="downstream_xnli", maximize_best_checkpoint_metric=True)


def corpus_pairs(corpus: Path, langs: list[str], count: int, rng: random.Random) -> list[Pair]:
    """``count`` pairs of real sentences from the corpus, cut to XNLI-like lengths."""
    sentences = []
    for lang in langs:
        with open(corpus / f"{lang}.txt", encoding="utf-8") as f:
            text = "".join(line for _, line in zip(range(3000), f))
        sentences += [s for s in re.split(r"(?<=[.!?。])\s+|\n", text) if len(s.split()) >= 3 or len(s) > 20]
    pick = lambda n: " ".join(rng.choice(sentences).split()[:n])[:300]  # noqa: E731
    return [Pair(pick(25), pick(12), rng.choice(LABELS)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "mono",
                        help="text the probe sentences come from")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=DEMO.validate_interval_updates,
                        help="--validate-interval-updates (default: the demo's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    langs = sorted(p.name for p in args.dest.iterdir() if (p / "train.idx").exists() and (args.corpus / f"{p.name}.txt").exists())
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        write_sentence_prediction(corpus_pairs(args.corpus, ["en"] if "en" in langs else langs[:1], 2000, rng),
                                  args.dest / layout.SPM_MODEL, args.dest / layout.DICT, probe, "train")
        write_sentence_prediction(corpus_pairs(args.corpus, langs, 200 * 15, rng),
                                  args.dest / layout.SPM_MODEL, args.dest / layout.DICT, probe, "valid")
        cmd = [sys.executable, "-m", "fairseq_cli.train", str(args.dest), "--user-dir", str(ROOT / "xlmr_plugin"),
               *probe_recipe(args.updates, args.interval).fairseq_args(), "--downstream-probe", f"xnli:{probe}"]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    valid = [json.loads(line.split("| valid | ", 1)[1]) for line in log.splitlines() if "| valid | " in line]
    probe_s = [float(r["valid_downstream_seconds"]) for r in valid]
    total_s = float(re.search(r"done training in ([\d.]+) seconds", log).group(1))
    train_s = total_s - sum(probe_s)
    # FLOPs at the real recipe: probe forward 2*N*tokens, training 6*N*tokens per update
    probe_tokens = (2000 + 3000) * 2 * 24  # sentences x ~24 pieces each
    interval = BASE.validate_interval_updates
    real = 2 * probe_tokens / (6 * BASE.total_batch * BASE.tokens_per_sample * interval)
    figures = {
        "updates": args.updates, "validate_interval_updates": args.interval, "probe_runs": len(probe_s),
        "probe_seconds": probe_s, "training_seconds": round(train_s, 1),
        "overhead_percent_at_demo_interval": round(100 * sum(probe_s) / train_s, 2),
        # one probe per validation at the base and large recipes' interval
        "overhead_percent_at_10k_update_interval": round(100 * max(probe_s) / (train_s / args.updates * interval), 3),
        "overhead_percent_estimated_base_recipe_flops": round(100 * real, 5),
        "command": " ".join(sys.argv),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
