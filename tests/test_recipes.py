"""One recipe source: every consumer (the Makefile's demo, the studies' scales, the hydra
configs, `xlmr-train --preset`, the probe benchmark, the task's defaults) trains what
`xlmr_plugin.recipes.RECIPES` renders, and fairseq parses what it renders."""
import argparse
import shlex
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from plugin_utils import PLUGIN, REPO
from xlmr.slurm import train
from xlmr.slurm.fairseq_train_job import without_unsupported_bf16
from xlmr_plugin.data.update_schedule import rescaled
from xlmr_plugin.recipe_cli import hydra_yaml, main as recipe_main
from xlmr_plugin.recipes import RECIPES, Recipe

sys.path.insert(0, str(REPO / "benchmarks"))
import downstream_probe_overhead  # noqa: E402


def options(argv: list[str]) -> dict[str, list[str]]:
    """{flag: its values} of an argument list; later flags win, as in fairseq's parser."""
    result: dict[str, list[str]] = {}
    flag = None
    for token in argv:
        if token.startswith("--"):
            flag = token
            result[flag] = []
        elif flag is not None:
            result[flag].append(token)
    return result


def launch(*argv: str, run_dir: Path = Path("RUN")) -> list[str]:
    """The fairseq-train arguments xlmr-train (and xlmr-sweep) would run."""
    parser = argparse.ArgumentParser()
    train.add_training_arguments(parser)
    args, extra = parser.parse_known_args(["DATA", *argv])
    return train.fairseq_arguments(args, extra, run_dir)


def test_makefile_demo_trains_the_demo_recipe(tmp_path):
    make = subprocess.run(["make", "-n", "demo", f"VENV={sys.prefix}", f"DEMO={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert make.returncode == 0, make.stderr[-3000:]
    (line,) = [l for l in make.stdout.replace("\\\n", " ").splitlines() if "/fairseq-train " in l]
    argv = shlex.split(line.split(" 2>&1")[0])[2:]
    demo = RECIPES["demo"].fairseq_args()
    assert argv == demo + ["--user-dir", "xlmr_plugin", "--save-dir", f"{tmp_path}/checkpoints"]
    # the figures of the README's demo section come from these values: moving one is a decision
    assert options(demo)["--max-update"] == ["2000"] and options(demo)["--lr"] == ["0.003"]
    assert options(demo)["--encoder-embed-dim"] == ["128"] and options(demo)["--validate-interval-updates"] == ["500"]


def test_study_scales_train_the_toy_and_base_recipes():
    def scale(name: str, env: dict) -> list[str]:
        script = f'set -- DATA SWEEP {name}; source examples/studies/scale.sh; printf "%s\\n" "${{SCALE_ARGS[@]}}"'
        out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, env=env, check=True)
        return out.stdout.splitlines()

    toy = launch(*scale("toy", {}))
    assert toy == ["DATA", "--user-dir", train.plugin_dir(), "--save-dir", "RUN/checkpoints",
                   *RECIPES["toy"].fairseq_args()]
    base = options(launch(*scale("base", {"MAX_UPDATE": "150000"})))
    budget = {"--max-update": ["150000"], "--total-num-update": ["150000"], "--warmup-updates": ["10000"]}
    for flag, values in options(RECIPES["base"].fairseq_args()).items():
        assert base[flag] == budget.get(flag, values), flag


@pytest.mark.parametrize("name", ["base", "large"])
def test_hydra_configs_are_the_recipes(name):
    committed = (REPO / "config" / "pretraining" / f"{name}.yaml").read_text(encoding="utf-8")
    assert committed == hydra_yaml(name, RECIPES[name]), f"regenerate: xlmr-recipe {name} --hydra > {name}.yaml"


@pytest.mark.parametrize("name", ["base", "large"])
def test_slurm_presets_are_the_recipes(name):
    recipe = RECIPES[name]
    nodes = recipe.reference_gpus // 8
    argv = options(launch("--preset", name, "--nodes", str(nodes), "--gpus-per-node", "8"))
    assert argv.pop("--update-freq") == [str(recipe.update_freq)]  # the hydra config's, on the same GPUs
    assert argv.pop("--user-dir") and argv.pop("--save-dir")
    assert argv == options(recipe.fairseq_args())


def test_probe_benchmark_trains_the_demo_model():
    probe = options(downstream_probe_overhead.probe_recipe(1000, 500).fairseq_args())
    demo = options(RECIPES["demo_paper"].fairseq_args())
    schedule = {"--max-update", "--total-num-update", "--validate-interval-updates", "--log-format"}
    checkpoints = {"--save-interval-updates", "--keep-interval-updates", "--no-epoch-checkpoints",
                   "--best-checkpoint-metric", "--no-save", "--maximize-best-checkpoint-metric"}
    assert {f: v for f, v in probe.items() if f not in schedule | checkpoints} == \
           {f: v for f, v in demo.items() if f not in schedule | checkpoints}


def test_task_defaults_to_the_papers_alpha():
    from xlmr_plugin.tasks.xlmr_mlm import XLMRMLMConfig

    assert XLMRMLMConfig().multilang_sampling_alpha == RECIPES["base"].multilang_sampling_alpha == 0.3


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_fairseq_parses_every_recipe(name):
    """Every rendered option is one fairseq knows, and lands as the recipe says."""
    from fairseq import options as fairseq_options

    recipe = RECIPES[name]
    parser = fairseq_options.get_training_parser()
    args = fairseq_options.parse_args_and_arch(parser, ["DATA", "--user-dir", str(PLUGIN), *recipe.fairseq_args()])
    assert (args.arch, args.lr, args.warmup_updates, args.max_update) == \
           (recipe.arch, [recipe.lr], recipe.warmup_updates, recipe.max_update)
    assert eval(args.adam_betas) == recipe.adam_betas and args.batch_size == recipe.batch_size
    # a number or a schedule's text: the task reads both (xlmr_plugin/data/update_schedule.py)
    assert str(args.multilang_sampling_alpha) == str(recipe.multilang_sampling_alpha) and args.cpu == recipe.cpu
    assert args.bf16 == (recipe.precision == "bf16")
    if recipe.shape:
        assert (args.encoder_layers, args.encoder_embed_dim) == (recipe.shape.layers, recipe.shape.width)


def test_paper_recipes_differ_only_where_the_paper_does():
    base, large = RECIPES["base"], RECIPES["large"]
    assert replace(large, arch=base.arch, lr=base.lr, warmup_updates=base.warmup_updates,
                   batch_size=base.batch_size, reference_gpus=base.reference_gpus) == base
    assert base.total_batch == base.reference_gpus * base.batch_size * base.update_freq == 8192
    with pytest.raises(ValueError, match="precision"):
        Recipe(precision="fp8")


def test_xlmr_recipe_prints_arguments_with_changes(capsys):
    recipe_main(["base", "--updates", "100", "--set", "warmup_updates=10", "--set", "adam_betas=(0.9,0.999)"])
    printed = options(shlex.split(capsys.readouterr().out))
    assert printed["--max-update"] == printed["--total-num-update"] == ["100"]
    assert printed["--warmup-updates"] == ["10"] and printed["--adam-betas"] == ["(0.9,0.999)"]
    with pytest.raises(SystemExit):
        recipe_main(["base", "--set", "warmup=10"])
    assert "no such recipe field" in capsys.readouterr().err


def test_job_swaps_bf16_for_fp16_only_on_a_gpu_without_it():
    argv = ["DATA", "--bf16", "--lr", "0.0006"]
    assert without_unsupported_bf16(argv, lacks_bf16=True) == ["DATA", "--fp16", "--lr", "0.0006"]
    assert without_unsupported_bf16(argv, lacks_bf16=False) == argv
    assert without_unsupported_bf16(["DATA", "--fp16"], lacks_bf16=True) == ["DATA", "--fp16"]
    assert without_unsupported_bf16(["--memory-efficient-bf16"], lacks_bf16=True) == ["--memory-efficient-fp16"]


def test_the_demo_is_the_paper_recipe_with_the_two_anneals():
    """What `make demo` trains differs from the paper's recipe at the demo's size only in its
    schedules (masking, learning rate) and what moves them (epochs, validation)."""
    demo, paper = RECIPES["demo"], RECIPES["demo_paper"]
    changed = {f.name for f in fields(Recipe) if getattr(demo, f.name) != getattr(paper, f.name)}
    assert changed == {"mask_prob", "lr_scheduler", "decay_fraction", "decay_shape", "epoch_blocks",
                       "validate_interval"}
    assert paper.mask_prob == RECIPES["base"].mask_prob and paper.lr_scheduler == RECIPES["base"].lr_scheduler


def test_xlmr_recipe_updates_keep_the_schedules_shares(capsys):
    """`--updates` moves a recipe's anneals with the run: the demo's masking still reaches 15%
    at 80% of it, and a constant or a stepped schedule keeps its kind."""
    demo = RECIPES["demo"]
    assert demo.mask_prob == "0:0.3,1600:0.15" and demo.max_update == 2000
    recipe_main(["demo", "--updates", "500"])
    printed = options(shlex.split(capsys.readouterr().out))
    assert printed["--mask-prob"] == ["0:0.3,400:0.15"] and printed["--max-update"] == ["500"]
    assert printed["--multilang-sampling-alpha"] == [f"{demo.multilang_sampling_alpha:g}"]
    assert rescaled("step:0:0.7,1000:0.3", 3, "--x") == "step:0:0.7,3000:0.3"
    with pytest.raises(ValueError, match="two points would meet"):
        rescaled("0:0.3,2:0.15", 0.1, "--mask-prob")
    with pytest.raises(SystemExit):
        recipe_main(["demo", "--updates", "0"])
