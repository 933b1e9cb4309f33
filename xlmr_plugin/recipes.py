"""The training recipes, one table every consumer reads: the Makefile's demo, the studies'
scales (``examples/studies/scale.sh``), ``xlmr-train --preset``, the hydra configs of
``config/pretraining/`` and the benchmarks all render ``RECIPES``; ``xlmr-recipe NAME``
prints one as fairseq-train arguments or, with ``--hydra``, as a fairseq-hydra-train config.

Sources of the paper's recipes (``base``, ``large``), value by value:

- XLM-R (Conneau et al. 2020, section 3 and appendix B): batch of 8192 sequences of
  512 tokens, 1.5M updates, masked LM with 15% masking, languages sampled with
  alpha = 0.3, the RoBERTa Base / Large shapes.
- RoBERTa (Liu et al. 2019, table 9), whose optimiser XLM-R reuses: Adam with
  beta = (0.9, 0.98), eps = 1e-6, weight decay 0.01, no gradient clipping (0.0),
  linear decay after warmup (fairseq's polynomial_decay, power 1), dropout 0.1;
  peak lr 6e-4 / warmup 24k updates (Base), 4e-4 / 30k (Large).
- Per-GPU batch: what fits a 32 GB V100 at 512 tokens (fairseq's examples/roberta use 16
  for Large); ``update_freq`` makes up the total (``xlmr-train`` derives it for its GPUs).

Choices of ours, where the paper says nothing:

- bf16 where the hardware has it: fp32's exponent range, so no loss scaling and no
  overflow skips. The SLURM job swaps it for fp16 on a GPU without bf16 (V100).
- A checkpoint every 1000 updates, the last two kept: a requeued or restarted run redoes
  at most 1000 updates, and a damaged newest checkpoint leaves one to fall back on.
- Validation every 10k updates (under 1% of the run); the best checkpoint by
  ``loss_lang_mean``, the unweighted mean over languages, so that "best" does not mean
  best on the high-resource languages that dominate the token-weighted loss.
- JSON logs every 100 updates (fairseq's default interval), which ``xlmr-report`` and
  TensorBoard read (``xlmr-train --status`` reads fairseq's other formats too).

``demo_paper`` and ``toy`` keep the paper's optimiser and masking at a size that trains on
CPU in minutes: 64-token blocks, no dropout, a higher peak lr and a short warmup, in fp32: at
their width (128, 64) bf16 on the CPU's AMX units made the demo slower (7.5 against 10.2
updates/s) and doubled its memory; ``precision="bf16"`` trains bf16 on CPU where it pays.
``demo`` is ``demo_paper`` with masking annealed from 30% to 15% and warmup-stable-decay: at
the same 2000 updates it fills masked words 2-6 times as well (README, the demo section);
packed blocks, tried too, filled them worse at 64 tokens (most lines get cut).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Optional, Tuple, Union

from xlmr_plugin.models.shapes import Shape

PRECISIONS = ("bf16", "fp16", "fp32")
# fairseq-hydra-train's config groups, in the order a config file lists them
GROUPS = ("common", "checkpoint", "task", "criterion", "dataset", "optimizer", "lr_scheduler", "optimization", "model")


def _option(group: str, help: str, default: Any = None) -> Any:
    """A recipe field that is fairseq's option of the same name, in hydra config group ``group``."""
    return field(default=default, metadata={"group": group, "help": help})


@dataclass(frozen=True)
class Recipe:
    """A training recipe in fairseq's option names; None (or False) leaves fairseq's default.

    Fields without a hydra group are not fairseq options: ``shape`` overrides the
    architecture's sizes, ``precision`` becomes ``--bf16``/``--fp16``, ``max_update`` also
    sets ``--total-num-update`` (the lr decays to 0 at the end), ``total_batch`` and
    ``reference_gpus`` give the hydra config's ``update_freq``.
    """

    task: Optional[str] = _option("task", "the pretraining task")
    criterion: Optional[str] = _option("criterion", "the loss")
    arch: Optional[str] = _option("model", "the architecture (xlmr_plugin/models/shapes.py)")
    shape: Optional[Shape] = field(default=None, metadata={"help": "sizes that replace the architecture's"})
    tokens_per_sample: Optional[int] = _option("task", "tokens per block")
    sample_break_mode: Optional[str] = _option("task", "how lines fill blocks")
    mask_prob: Optional[Union[float, str]] = _option("task", "share of tokens masked, or a schedule over updates")
    multilang_sampling_alpha: Optional[Union[float, str]] = _option(
        "task", "language sampling exponent: q ∝ p^alpha, or a schedule over updates")
    language_sampling: Optional[str] = _option("task", "alpha (q ∝ p^alpha) or unimax")
    unimax_max_epochs: Optional[float] = _option("task", "unimax: the most passes over a language's tokens")
    unimax_budget_tokens: Optional[int] = _option("task", "unimax: the run's token budget")
    language_joins: Optional[str] = _option("task", "LANG:UPDATE,...: languages sampled only from that update")
    epoch_blocks: Optional[int] = _option("task", "blocks per epoch, where data schedules are read")
    dropout: Optional[float] = _option("model", "dropout")
    attention_dropout: Optional[float] = _option("model", "dropout of the attention weights")
    optimizer: Optional[str] = _option("optimizer", "the optimizer")
    adam_betas: Optional[Tuple[float, float]] = _option("optimizer", "Adam's beta1, beta2")
    adam_eps: Optional[float] = _option("optimizer", "Adam's epsilon")
    weight_decay: Optional[float] = _option("optimizer", "decoupled weight decay")
    clip_norm: Optional[float] = _option("optimization", "gradient norm clipping, 0: none")
    lr_scheduler: Optional[str] = _option("lr_scheduler", "the learning-rate schedule")
    lr: Optional[float] = _option("optimization", "peak learning rate")
    warmup_updates: Optional[int] = _option("lr_scheduler", "updates of linear warmup")
    decay_fraction: Optional[float] = _option("lr_scheduler", "warmup_stable_decay: share of the run decaying")
    decay_shape: Optional[str] = _option("lr_scheduler", "warmup_stable_decay: linear, cosine or 1-sqrt")
    max_update: Optional[int] = _option("optimization", "updates of the run (and of the lr decay)")
    batch_size: Optional[int] = _option("dataset", "sequences per GPU (or process) and step")
    batch_size_valid: Optional[int] = _option("dataset", "sequences per validation step")
    total_batch: Optional[int] = field(default=None, metadata={"help": "sequences per update, all GPUs"})
    reference_gpus: Optional[int] = field(default=None, metadata={
        "help": "GPUs the hydra config's update_freq assumes: total_batch / (GPUs x batch_size)"})
    precision: str = field(default="fp32", metadata={
        "help": "bf16 (GPUs; CPUs with bf16 matrix units, else fp32 at run time), fp16 (GPUs only) or fp32"})
    cpu: bool = _option("common", "train on CPU", False)
    num_workers: Optional[int] = _option("dataset", "data loading processes, 0: in the trainer")
    save_interval_updates: Optional[int] = _option("checkpoint", "a checkpoint every N updates")
    keep_interval_updates: Optional[int] = _option("checkpoint", "interval checkpoints kept")
    no_epoch_checkpoints: bool = _option("checkpoint", "no checkpoint_<epoch>.pt", False)
    no_save: bool = _option("checkpoint", "no checkpoints at all", False)
    validate_interval_updates: Optional[int] = _option("dataset", "validation every N updates")
    validate_interval: Optional[int] = _option("dataset", "validation every N epochs (and at every N updates)")
    best_checkpoint_metric: Optional[str] = _option("checkpoint", "what checkpoint_best.pt is best by")
    maximize_best_checkpoint_metric: bool = _option("checkpoint", "higher is better", False)
    log_format: Optional[str] = _option("common", "simple, json, ...")
    log_interval: Optional[int] = _option("common", "a train_inner record every N updates")

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.cpu and self.precision == "fp16":
            raise ValueError("precision: fp16 trains on GPUs only (fairseq's fp16 loss scaling needs CUDA); "
                             "on CPU use bf16 or fp32")
        if self.total_batch and self.reference_gpus and self.batch_size:
            if self.total_batch % (self.reference_gpus * self.batch_size):
                raise ValueError(f"total_batch {self.total_batch} is not reference_gpus {self.reference_gpus} "
                                 f"x batch_size {self.batch_size} x a whole update_freq")

    @property
    def update_freq(self) -> int:
        """Steps accumulated per update on ``reference_gpus`` GPUs (1 without a total batch)."""
        if not (self.total_batch and self.reference_gpus):
            return 1
        return self.total_batch // (self.reference_gpus * self.batch_size)

    def fairseq_args(self) -> List[str]:
        """The recipe as fairseq-train arguments, without data, save directory or --user-dir."""
        argv: List[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "shape":
                argv += value.model_args() if value else []
            elif f.name == "precision":
                argv += [f"--{value}"] if value != "fp32" else []
            elif f.name == "max_update":
                argv += ["--total-num-update", str(value), "--max-update", str(value)] if value else []
            elif "group" not in f.metadata or value is None or value is False:
                continue
            elif value is True:
                argv.append(_flag(f.name))
            else:
                argv += [_flag(f.name), _text(value)]
        return argv

    def hydra_config(self) -> Dict[str, Dict[str, Any]]:
        """The recipe as fairseq-hydra-train config groups, without data or user_dir.

        ``--total-num-update`` is left out: polynomial_decay reads optimization.max_update
        there, so an override of max_update moves the end of the decay with it.
        """
        config: Dict[str, Dict[str, Any]] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            group = f.metadata.get("group")
            if f.name == "shape" and value:
                config.setdefault("model", {}).update(
                    encoder_layers=value.layers, encoder_embed_dim=value.width,
                    encoder_attention_heads=value.heads, encoder_ffn_embed_dim=value.ffn)
            elif f.name == "precision" and value != "fp32":
                config.setdefault("common", {})[value] = True
            elif group is None or value is None or value is False:
                continue
            elif f.name in ("task", "arch", "optimizer", "lr_scheduler"):
                config.setdefault(group, {})["_name"] = value
            elif f.name == "criterion":
                config[group] = value
            elif f.name == "lr":
                config.setdefault(group, {})["lr"] = [value]
            else:
                config.setdefault(group, {})[f.name] = _text(value) if isinstance(value, tuple) else value
        config.setdefault("optimization", {})["update_freq"] = [self.update_freq]
        return {group: config[group] for group in GROUPS if group in config}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _text(value: Any) -> str:
    """fairseq's spelling of a value: Adam's betas as "(0.9,0.98)", numbers as Python writes them."""
    if isinstance(value, tuple):
        return "(" + ",".join(map(str, value)) + ")"
    return str(value)


BASE = Recipe(
    task="xlmr_mlm", criterion="xlmr_masked_lm", arch="xlmr_base", tokens_per_sample=512, sample_break_mode="complete", mask_prob=0.15,
    multilang_sampling_alpha=0.3, dropout=0.1, attention_dropout=0.1,
    optimizer="fused_adamw", adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.01, clip_norm=0.0,
    lr_scheduler="polynomial_decay", lr=6e-4, warmup_updates=24_000, max_update=1_500_000,
    batch_size=32, total_batch=8192, reference_gpus=64, precision="bf16",
    save_interval_updates=1000, keep_interval_updates=2, no_epoch_checkpoints=True,
    validate_interval_updates=10_000, best_checkpoint_metric="loss_lang_mean",
    log_format="json", log_interval=100,
)
# a post-norm XLM-R of 2 layers, width 128, that trains in minutes on two CPU cores, with the
# paper's recipe: the schedules study's baseline (analysis/schedules_study.py) and the toy scale
DEMO_PAPER = replace(
    BASE, arch="xlmr_tiny", shape=Shape(2, 128, 4, 512), tokens_per_sample=64, dropout=0.0,
    attention_dropout=0.0, lr=3e-3, warmup_updates=100, max_update=2000, batch_size=64, total_batch=None,
    reference_gpus=None, precision="fp32", cpu=True, num_workers=0, save_interval_updates=500,
    keep_interval_updates=1, validate_interval_updates=500, log_format="simple",
)
# what `make demo` trains: the same model and updates, masking annealed 30% -> 15% and
# warmup-stable-decay (mmBERT's two anneals); 100-update epochs (epoch_blocks) move the mask
# rate, validation every 500 updates only
DEMO = replace(
    DEMO_PAPER, mask_prob="0:0.3,1600:0.15", lr_scheduler="warmup_stable_decay", decay_fraction=0.3,
    decay_shape="1-sqrt", epoch_blocks=6400, validate_interval=1000,
)
RECIPES: Dict[str, Recipe] = {
    "base": BASE,
    "large": replace(BASE, arch="xlmr_large", lr=4e-4, warmup_updates=30_000, batch_size=16, reference_gpus=128),
    "demo": DEMO,
    "demo_paper": DEMO_PAPER,
    # the studies' CPU scale: xlmr_tiny as it is, no checkpoints, JSON logs for xlmr-report
    "toy": replace(
        DEMO_PAPER, shape=None, batch_size=16, batch_size_valid=64, save_interval_updates=None,
        keep_interval_updates=None, no_epoch_checkpoints=False, no_save=True, validate_interval_updates=1000,
        best_checkpoint_metric=None, log_format="json", log_interval=50,
    ),
}
