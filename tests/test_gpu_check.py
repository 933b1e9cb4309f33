"""The GPU check (benchmarks/gpu_check.sh) rehearsed on CPU, and the fixes of the first GPU
run's predicted failures, each with a test that fails without its fix: full batches only,
a compile lever that cannot build dropped, one failing system never stopping the others,
crash.pt out of the working tree, --gpus-per-node from the machine, fused_adamw refusing
half-precision moments, and a GPU command that fits the lent machine's minutes. Then the
benchmark's packed lever: packed blocks for the plugin alone, real tokens and empty slots
counted from the batches each system read."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import xlmr_plugin  # noqa: F401
from plugin_utils import REPO
from xlmr.slurm import train

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402
import train_throughput  # noqa: E402
from train_systems import (  # noqa: E402
    CPU_LEVERS, DEFAULT_LEVERS, FairseqSystem, Workload, _epoch, epoch_batches, fairseq_args, plugin_args, stock_args,
    training_cfg, training_task,
)
from xlmr_plugin.models.shapes import Shape  # noqa: E402

WORKLOAD = Workload(Shape(1, 64, 4, 256), train_throughput.VOCAB, 64, 3)


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> Path:
    # documents to 1,250 tokens or more (seed 4: 5,165): 106 complete and 82 packed blocks of 64,
    # so that either mode's epoch ends in a short batch of 3
    return train_throughput.write_data(tmp_path_factory.mktemp("bench"), train_throughput.VOCAB, 1250, 4)


def system(data: Path, work: Path, *extra: str, task=None, init=None) -> FairseqSystem:
    common = fairseq_args(str(data), WORKLOAD, "cpu", 0, 1, str(work / "checkpoints"))
    return FairseqSystem(common + list(extra), task, init)


def test_dry_run_of_the_gpu_check(tmp_path):
    """The command the GPU machine runs, on CPU with tiny shapes: every step ok, one JSON each."""
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, WHEELS=str(tmp_path / "no-wheels"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8  # what a lent machine brings back from $OUT
    assert files == sorted(["env.json", "gpu_check.log", "summary.json", *(f"{s.name}.json" for s in gpu_check.STEPS)])
    env_record = json.loads((out / "env.json").read_text())
    assert env_record["torch"] == torch.__version__ and env_record["dry_run"] is True
    steps = {s.name: json.loads((out / f"{s.name}.json").read_text()) for s in gpu_check.STEPS}
    assert {name: r["status"] for name, r in steps.items()} == {s.name: "ok" for s in gpu_check.STEPS}
    parity = steps["parity"]["figures"]
    assert parity["comparisons"]["plugin-bf16"]["within_tolerance"] is True
    # SDPA, or on a CPU with bf16 units the explicit maths it runs at short blocks in bf16
    assert any("scaled_dot_product" in k or k == "explicit_attention" for k in parity["sdpa"]["attention_kernels"])
    large = {r["system"]: r for r in steps["throughput_large"]["figures"]["results"]}
    assert set(large) == {"plugin", "fairseq", "hf"}
    for r in large.values():
        assert r["tokens_per_s"] > 0 and r["skipped_steps"] == 0
    assert large["plugin"]["padding_share"] < 0.05 < large["fairseq"]["unfilled_share"]  # packed, complete
    base = steps["throughput_base"]["figures"]
    assert [r["system"] for r in base["results"]] == ["plugin", "fairseq", "hf", "plugin-packed"]
    assert base["packing"]["ratio"] == base["ratios"]["plugin/plugin-packed"] > 0
    assert any(line.startswith("packed: ") for line in steps["throughput_base"]["log_tail"])
    assert [r["system"] for r in steps["sweep_large_b64"]["figures"]["results"]] == ["plugin"]
    assert steps["sweep_large_b64"]["figures"]["workload"]["batch_size"] == 4


def test_the_gpu_command_fits_the_lent_machine():
    """The README's old GPU command (--ablate --find-max-batch, 2 rounds) took far longer than
    the 15 minutes a lent machine gives, start-up included; the check's boxes fit in 9."""
    assert train_throughput.GPU_COMMAND == "bash benchmarks/gpu_check.sh"
    assert gpu_check.ENV_S + sum(s.seconds for s in gpu_check.STEPS) <= gpu_check.BUDGET_S <= 540


@pytest.mark.parametrize("levers", [["sdpa"], ["sdpa", "packed"]])
def test_only_full_batches_are_timed(bench_data, tmp_path, levers):
    """The short last batch is left out; complete blocks keep their batches' widths (fairseq
    batches them by size), packed ones fill the block."""
    plugin = system(bench_data, tmp_path, *plugin_args(levers, "cpu"))
    rows = [len(s["id"]) for s in _epoch(plugin.task, plugin.cfg)]
    assert min(rows) < 3, "the epoch has no short batch: nothing to filter"
    timed = list(epoch_batches(plugin.task, plugin.cfg, WORKLOAD))
    assert len(timed) == rows.count(3) >= 5
    assert all(len(s["net_input"]["src_tokens"]) == 3 for s in timed)
    widths = [s["net_input"]["src_tokens"].size(1) for s in timed]
    real = sum(int(s["net_input"]["src_tokens"].ne(1).sum()) for s in timed)
    assert max(widths) <= 64
    if "packed" in levers:
        assert real > 0.95 * len(timed) * 3 * 64
    else:
        assert len(set(widths)) > 1 and real < 0.9 * len(timed) * 3 * 64


def test_a_compile_lever_that_cannot_build_is_dropped(tmp_path):
    """No working C++ compiler (CXX=/bin/false, inductor's caches off so nothing compiled
    earlier is reused): the probe drops the lever with the reason, and every system runs."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, CXX="/bin/false", TORCHINDUCTOR_FORCE_DISABLE_CACHES="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cpu", "--layers", "1",
                           "--width", "64", "--heads", "4", "--ffn", "256", "--tokens-per-sample", "64",
                           "--batch-size", "2", "--warmup", "1", "--steps", "2", "--levers", "sdpa,compile",
                           "--json", str(out), "--work-dir", str(tmp_path / "work")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert list(figures["dropped_levers"]) == ["compile"] and "compiler" in figures["dropped_levers"]["compile"].lower()
    assert figures["levers"] == ["sdpa"] and "lever compile dropped" in proc.stdout
    assert [r["system"] for r in figures["results"] if r.get("tokens_per_s")] == ["plugin", "fairseq", "hf"]


def test_one_failing_system_leaves_the_others_measured(bench_data, tmp_path):
    """The GPU schedule: a system that fails to build (here 3 heads for width 64) is that
    system's result, and the next system is measured."""
    args = argparse.Namespace(device="cpu", warmup=1, steps=2)
    good = system(bench_data, tmp_path, *stock_args("cpu"))
    batches = lambda: epoch_batches(good.task, good.cfg, WORKLOAD)  # noqa: E731
    pad = good.task.source_dictionary.pad()
    bad = train_throughput.run_system(
        "plugin", lambda: system(bench_data, tmp_path, *plugin_args(["sdpa"], "cpu"), "--encoder-attention-heads", "3"),
        batches, args, WORKLOAD, None, pad)
    assert bad["error"].startswith("AssertionError") and "divisible" in bad["error"]
    measured = train_throughput.run_system("fairseq", lambda: good, batches, args, WORKLOAD, None, pad)
    assert measured["steps"] == 2 and measured["tokens_per_s"] > 0 and measured["unfilled_share"] > 0


def test_a_failing_step_writes_crash_pt_into_the_work_dir(bench_data, tmp_path, monkeypatch):
    """fairseq saves crash.pt into --save-dir on any step exception (default ./checkpoints:
    gigabytes in the working tree for xlmr_large)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    plugin = system(bench_data, tmp_path / "work", *plugin_args(["sdpa"], "cpu"))
    sample = next(iter(epoch_batches(plugin.task, plugin.cfg, WORKLOAD)))
    sample["net_input"]["src_tokens"][0, 1] = train_throughput.VOCAB + 10  # no such embedding row
    with pytest.raises(IndexError):
        plugin.step(sample)
    assert (tmp_path / "work" / "checkpoints" / "crash.pt").exists()
    assert not (cwd / "checkpoints").exists()


def test_gpus_per_node_defaults_to_the_machines():
    """With --executor local and no --gpus-per-node, the GPUs this machine has (none here: CPU)."""
    parser = argparse.ArgumentParser()
    train.add_training_arguments(parser)
    args, _ = parser.parse_known_args(["DATA", "--executor", "local"])
    assert train.gpus_per_node(args) == torch.cuda.device_count()
    assert train.world_size(args) == max(1, torch.cuda.device_count())
    assert train.run_recipe(args).cpu == (torch.cuda.device_count() == 0)
    too_many = subprocess.run([str(Path(sys.executable).with_name("xlmr-train")), "DATA", "--run-dir", "RUN",
                               "--gpus-per-node", str(torch.cuda.device_count() + 1)],
                              capture_output=True, text=True, timeout=120)
    assert too_many.returncode == 2 and "--gpus-per-node" in too_many.stderr


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_adamw_refuses_half_precision_moments(dtype):
    from fairseq.optim.adam import FairseqAdamConfig

    from xlmr_plugin.optim.fused_adamw import FusedAdamW

    cfg = OmegaConf.structured(FairseqAdamConfig(lr=[1e-3], tpu=False))
    with pytest.raises(ValueError, match="memory-efficient"):
        FusedAdamW(cfg, [torch.nn.Parameter(torch.ones(4, dtype=dtype))])
    FusedAdamW(cfg, [torch.nn.Parameter(torch.ones(4))])  # fp32 parameters (fp32 master weights) train


def test_packed_needs_sdpa_and_is_ablated_with_it(tmp_path, capsys):
    """packed is on by default in both modes; --ablate turns off a lever and whatever needs it."""
    assert "packed" in CPU_LEVERS and "packed" in DEFAULT_LEVERS
    args = train_throughput.parse_args(["--device", "cpu", "--levers", "sdpa,fused_ce,packed", "--ablate",
                                        "--work-dir", str(tmp_path)])
    assert args.ablations == {"plugin-sdpa-packed": ["fused_ce"], "plugin-fused_ce": ["sdpa", "packed"],
                              "plugin-packed": ["sdpa", "fused_ce"]}
    args = train_throughput.parse_args(["--device", "cpu", "--ablate", "packed", "--work-dir", str(tmp_path)])
    assert list(args.ablations) == ["plugin-packed"] and "packed" not in args.ablations["plugin-packed"]
    for argv, message in ((["--levers", "packed"], "--levers: packed needs sdpa"),
                          (["--levers", "sdpa", "--ablate", "packed"], "--ablate: ['packed'] not among the levers")):
        with pytest.raises(SystemExit):
            train_throughput.parse_args(["--device", "cpu", *argv, "--work-dir", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_packed_lever_real_tokens_and_empty_slots(tmp_path):
    """--ablate packed, tiny: the plugin reads packed blocks, stock fairseq, HF and the plugin
    without the lever complete ones. Each system's real tokens, padding and unfilled slots
    are those of the batches it read (recounted here from its task); over the epoch packed
    blocks leave almost no slot empty, complete ones a fifth or more (the synthetic text has the
    corpus's line and document lengths; a tiny epoch's few short packed blocks may fall among
    the timed steps); and the packing figures are those of the two plugin rows."""
    work = tmp_path / "work"
    steps = 3
    figures = train_throughput.main([*gpu_check.TINY, "--warmup", "1", "--steps", str(steps), "--num-workers", "0",
                                     "--levers", "sdpa,packed", "--ablate", "packed", "--work-dir", str(work)])
    rows = {r["system"]: r for r in figures["results"]}
    assert list(rows) == ["plugin", "fairseq", "hf", "plugin-packed"]
    workload = Workload(Shape(1, 64, 4, 256), train_throughput.VOCAB, 64, 2)
    common = fairseq_args(str(next(work.glob("documents_*"))), workload, "cpu", 0, 1, str(tmp_path / "checkpoints"))
    epoch_unfilled = {}
    for mode, levers, names in (("packed", ["sdpa", "packed"], ["plugin"]),
                                ("complete", ["sdpa"], ["fairseq", "hf", "plugin-packed"])):
        cfg = training_cfg(common + plugin_args(levers, "cpu"))
        assert cfg.task.sample_break_mode == mode
        task = training_task(cfg)
        pad = task.source_dictionary.pad()
        epoch = list(epoch_batches(task, cfg, workload))
        epoch_unfilled[mode] = 1 - sum(int(s["net_input"]["src_tokens"].ne(pad).sum()) for s in epoch) / (
            len(epoch) * 2 * 64)
        timed = epoch[1:1 + steps]  # after the warm-up step
        real = sum(int(s["net_input"]["src_tokens"].ne(pad).sum()) for s in timed)
        slots = sum(s["net_input"]["src_tokens"].numel() for s in timed)
        for name in names:
            assert rows[name]["steps"] == steps and rows[name]["tokens_per_step"] == real // steps, name
            assert rows[name]["padding_share"] == round(1 - real / slots, 4), name
            assert rows[name]["unfilled_share"] == round(1 - real / (steps * 2 * 64), 4), name
    assert epoch_unfilled["packed"] < 0.03 and epoch_unfilled["complete"] > 0.2, epoch_unfilled
    assert rows["plugin"]["unfilled_share"] < rows["plugin-packed"]["unfilled_share"] / 2
    packing = figures["packing"]
    assert packing["ratio"] == pytest.approx(rows["plugin"]["tokens_per_s"] / rows["plugin-packed"]["tokens_per_s"],
                                             rel=1e-3)
    assert packing["removed_unfilled_share"] == pytest.approx(
        rows["plugin-packed"]["unfilled_share"] - rows["plugin"]["unfilled_share"], abs=1e-4)
    assert packing["goal_met"] == (packing["ratio"] >= 1 + packing["removed_unfilled_share"])
