"""Shared helpers of the plugin tests: run the real fairseq CLI, read its JSON logs,
and derive small data folders from a prepared DEST without re-running the preparation."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "xlmr_plugin"

# a 2-layer, width-64 model on CPU: the settings every CLI test starts from
TINY = [
    "--user-dir", str(PLUGIN), "--task", "xlmr_mlm", "--criterion", "xlmr_masked_lm",
    "--arch", "xlmr_tiny", "--tokens-per-sample", "64", "--cpu", "--num-workers", "0",
    "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
    "--warmup-updates", "5", "--total-num-update", "200", "--dropout", "0.1",
    "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints",
    "--seed", "3", "--required-batch-size-multiple", "1",
]


def fairseq_cli(tool: str, args: Sequence[str], cwd: Optional[Path] = None) -> str:
    """Run a fairseq console script of this interpreter's environment; return its log."""
    script = Path(sys.executable).with_name(tool)
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fairseq_cli." + tool.split("-", 1)[1].replace("-", "_")]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd + [str(a) for a in args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{tool} failed:\n{log[-6000:]}"
    return log


def json_records(log: str, tag: str) -> List[Dict[str, float]]:
    """The JSON stats fairseq logs for ``tag``, as floats where numeric.

    fairseq-train writes ``| INFO | <tag> | {...}``, hydra's logging ``][<tag>][INFO] - {...}``.
    """
    records = []
    for line in log.splitlines():
        for marker in (f"| INFO | {tag} | ", f"][{tag}][INFO] - "):
            if marker in line:
                raw = json.loads(line.split(marker, 1)[1])
                records.append({k: _number(v) for k, v in raw.items()})
    return records


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def small_dest(source: Path, dest: Path, items: Dict[str, Optional[int]], valid_items: int = 60) -> Path:
    """A DEST whose languages are the first ``n`` lines of ``source``'s (None: all of them),
    and at most ``valid_items`` lines of each valid split: CPU-sized runs of real data.

    dict.txt and spm.model are linked; ``{"xx": 2}`` with "xx" absent from ``source``
    copies the two shortest non-empty lines of the first language under a new name: a
    language with fewer tokens than one block.
    """
    from fairseq.data import indexed_dataset

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dict.txt", "spm.model"):
        if not (dest / name).exists():
            (dest / name).symlink_to(source / name)
    first = sorted(p.name for p in source.iterdir() if (p / "train.idx").exists())[0]
    for lang, n in items.items():
        src_lang = lang if (source / lang).is_dir() else first
        (dest / lang).mkdir(exist_ok=True)
        for split in ("train", "valid"):
            data = indexed_dataset.MMapIndexedDataset(str(source / src_lang / split))
            limit = n if split == "train" else min(n or valid_items, valid_items)
            lines = np.arange(len(data) if limit is None else min(limit, len(data)))
            if src_lang != lang:
                sizes = np.where(data.sizes > 2, data.sizes, np.iinfo(np.int32).max)
                lines = np.argsort(sizes, kind="stable")[:limit]
            builder = indexed_dataset.MMapIndexedDatasetBuilder(
                str(dest / lang / f"{split}.bin"), dtype=data._index.dtype)
            for i in lines:
                builder.add_item(data[int(i)])
            builder.finalize(str(dest / lang / f"{split}.idx"))
    return dest


def write_stats(dest: Path) -> Path:
    """``dest/stats.tsv`` for ``dest``'s languages as they now stand (e.g. cut by small_dest),
    through xlmr-prepare's writer: train tokens and the share p of each."""
    from fairseq.data import indexed_dataset

    from xlmr_plugin.storage import layout

    tokens = {}
    for lang in sorted(p.name for p in dest.iterdir() if (p / "train.idx").exists()):
        split = indexed_dataset.MMapIndexedDataset(str(dest / lang / "train"))  # sizes live in its mmap
        tokens[lang] = int(split.sizes.sum())
        del split
    total = sum(tokens.values())
    layout.write_stats([{"lang": lang, "train_tokens": n, "p": n / total} for lang, n in tokens.items()], dest)
    return dest



def sampling_table(log: str) -> Dict[str, Dict[str, float]]:
    """The per-language table xlmr_mlm logs when it loads the training data (first one)."""
    table = log.split("language sampling, alpha=", 1)[1].split(" total ", 1)[0]
    row = re.compile(r"\| (\S+) +(\d+) +([\d.]+) +([\d.]+) +(\d+)/(\d+) +(\d+) +(\d+) +([\d.]+)$")
    rows = {}
    for match in filter(None, map(row.search, table.splitlines())):
        lang, *numbers = match.groups()
        rows[lang] = dict(zip(["tokens", "p", "q", "shard", "shards", "blocks", "drawn", "ratio"], map(float, numbers)))
    return rows


def sampling_tables(log: str) -> List[Dict]:
    """Every sampling table xlmr_mlm logs (one whenever it changes): its rule ("alpha=0.3",
    "unimax=..."), the update and epoch it holds from, and its rows as ``sampling_table``'s."""
    header = re.compile(r"language sampling, (.+), from update (\d+) \(epoch (\d+)\) \(p: ")
    tables = []
    for chunk in log.split("language sampling, ")[1:]:
        match = header.search("language sampling, " + chunk.splitlines()[0])
        rows = sampling_table("language sampling, alpha=" + chunk.split("\n", 1)[1])
        tables.append({"rule": match.group(1), "update": int(match.group(2)), "epoch": int(match.group(3)),
                       "rows": rows})
    return tables


def train_choosing_best_by_probe(xlmr_data: Path, out: Path, name: str, probe_dir: Path) -> List[Dict[str, float]]:
    """40 updates of TINY on three languages, validating and saving every 10 with the
    ``--downstream-probe NAME:probe_dir`` that picks ``out/ckpt/checkpoint_best.pt``; the
    validation records at those updates, after checking that ``checkpoint_best.pt`` holds the
    earliest best score (fairseq keeps the first of equal scores). Data: ``out/data``."""
    import pytest
    import torch

    dest = small_dest(xlmr_data, out / "data", {"en": 300, "de": 300, "fr": 300})
    save = out / "ckpt"
    log = fairseq_cli("fairseq-train", [
        dest, *TINY, "--batch-size", "16", "--max-update", "40", "--validate-interval-updates", "10",
        "--save-interval-updates", "10", "--downstream-probe", f"{name}:{probe_dir}",
        "--best-checkpoint-metric", f"downstream_{name}", "--maximize-best-checkpoint-metric", "--save-dir", save,
    ])
    valid = [r for r in json_records(log, "valid") if r["valid_num_updates"] % 10 == 0]
    assert [r["valid_num_updates"] for r in valid] == [10, 20, 30, 40]
    scores = [r[f"valid_downstream_{name}"] for r in valid]
    best = torch.load(save / "checkpoint_best.pt", weights_only=False)
    assert best["extra_state"]["best"] == pytest.approx(max(scores), abs=0.01)
    assert best["optimizer_history"][-1]["num_updates"] == valid[scores.index(max(scores))]["valid_num_updates"]
    return valid
