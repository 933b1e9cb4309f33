"""The three systems of benchmarks/train_throughput.py, each a callable training step.

- ``plugin``: our fairseq plugin (model ``xlmr_roberta``, criterion ``xlmr_masked_lm``,
  optimizer ``fused_adamw``, bf16 on GPU and on CPUs with bf16 matrix units) with the levers chosen.
- ``fairseq``: stock fairseq (model ``roberta`` of the same size, criterion ``masked_lm``,
  optimizer ``adam``, fp16 on GPU), as ``fairseq-train --arch roberta_large --fp16`` runs it.
- ``hf``: Hugging Face ``XLMRobertaForMaskedLM`` with SDPA attention, a plain torch loop,
  bf16 autocast on GPU and torch's fused AdamW.

Both fairseq systems go through ``fairseq.trainer.Trainer.train_step``, the step
fairseq-train takes (fp16/bf16 optimizer wrappers, gradient norm and logging included).
All three read the batches of ``xlmr_mlm`` tasks over the same data, seed and batch size
(the task only reads data; the stock model and criterion never see its language ids) and
start from the same weights. The break mode is the one difference: ``complete`` blocks
(whole lines, fairseq-train's default) for all, except the plugin with the ``packed``
lever, which reads packed blocks: only its model keeps the pieces of a block apart.
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from xlmr_plugin.patches.bf16_training import bf16_without_tpu, cpu_bf16_missing, cpu_bf16_or_fp32
from xlmr_plugin.interop.hf_conversion import fairseq_to_hf
from xlmr_plugin.models.shapes import MAX_POSITIONS, Shape

PLUGIN = Path(__file__).resolve().parents[1] / "xlmr_plugin"

# lever name -> plugin fairseq-train arguments (off: the plain path of each)
LEVERS: Dict[str, List[str]] = {
    "bf16": ["--bf16"],  # off: fp32; fp32 master weights either way (fairseq's FP16Optimizer)
    "sdpa": [],  # off: --attention-impl fairseq
    "fuse_qkv": ["--fuse-qkv"],
    "pad_vocab": ["--vocab-pad-multiple", "64"],
    "fused_ce": ["--fused-cross-entropy"],
    "no_lang_sync": ["--no-train-language-metrics"],
    "fused_adamw": [],  # off: --optimizer adam
    "compile": ["--compile-layers"],
    "checkpoint": ["--checkpoint-activations"],
    # data-side levers (what the task reads)
    "packed": ["--sample-break-mode", "packed"],  # off: complete (fairseq_args)
}
# lever -> the lever it cannot run without: packed blocks need the sdpa model, whose
# attention stays inside each piece (fairseq's attention is refused at build)
REQUIRES: Dict[str, str] = {"packed": "sdpa"}
DEFAULT_LEVERS = [name for name in LEVERS if name != "checkpoint"]
# On CPU the GPU-only wins are left out by default: fuse_qkv and pad_vocab cost a weight
# copy per step there, compile minutes of C++ compilation (--levers switches any on). packed
# stays on in both: per real token a packed CPU step costs about what a complete one does
# (README, packed blocks), and its steps are full
CPU_LEVERS = [name for name in DEFAULT_LEVERS if name not in ("fuse_qkv", "pad_vocab", "compile")]


@dataclass(frozen=True)
class Workload:
    """What one benchmark step trains: an encoder shape, a vocabulary and a batch."""

    shape: Shape
    vocab: int
    tokens_per_sample: int
    batch_size: int

    def flops_per_token(self) -> float:
        """Model training FLOPs per token: encoder matmuls (6 N), attention (12 L d s) and the
        LM head on the 15% masked tokens only (dense + projection)."""
        layers, d, ffn = self.shape.layers, self.shape.width, self.shape.ffn
        # per layer: q, k, v, out projections; two FFN matmuls; two LayerNorms
        n_encoder = layers * (4 * d * d + 4 * d + 2 * d * ffn + ffn + d + 4 * d)
        return 6 * n_encoder + 12 * layers * d * self.tokens_per_sample + 0.15 * 6 * (d * d + d * self.vocab)


def fairseq_args(data: str, workload: Workload, device: str, workers: int, seed: int, save_dir: str) -> List[str]:
    """What both fairseq systems share: data, batch, schedule, dropout as in XLM-R, blocks of
    whole lines (the packed lever overrides it). ``save_dir`` is where fairseq writes
    ``crash.pt`` when a step raises (by default ./checkpoints, which for ``xlmr_large`` is
    gigabytes in the working tree)."""
    return [
        data, "--user-dir", str(PLUGIN), "--task", "xlmr_mlm", "--sample-break-mode", "complete",
        "--tokens-per-sample", str(workload.tokens_per_sample), "--batch-size", str(workload.batch_size),
        "--required-batch-size-multiple", "1", "--num-workers", str(workers), "--seed", str(seed),
        "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01", "--clip-norm", "0.0",
        "--lr", "1e-4", "--lr-scheduler", "fixed", "--max-update", "1000000",
        "--max-positions", str(MAX_POSITIONS), "--dropout", "0.1", "--attention-dropout", "0.1", "--log-format", "none",
        "--disable-validation", "--save-dir", save_dir, *workload.shape.model_args(),
        *(["--cpu"] if device == "cpu" else []),
    ]


def plugin_args(levers: List[str], device: str) -> List[str]:
    args = ["--arch", "xlmr_base", "--criterion", "xlmr_masked_lm",
            "--optimizer", "fused_adamw" if "fused_adamw" in levers else "adam",
            "--attention-impl", "sdpa" if "sdpa" in levers else "fairseq"]
    for name in levers:
        args += LEVERS[name]
    return args


def stock_args(device: str) -> List[str]:
    return ["--arch", "roberta_base", "--criterion", "masked_lm", "--optimizer", "adam"] + \
           (["--fp16"] if device == "cuda" else [])


def without(levers: List[str], lever: str) -> List[str]:
    """``levers`` with ``lever`` off, and with it every lever that needs it (REQUIRES)."""
    off = {lever} | {name for name, needed in REQUIRES.items() if needed == lever}
    return [name for name in levers if name not in off]


def unavailable_levers(levers: List[str], device: str) -> Dict[str, str]:
    """{lever: why it cannot run here} among ``levers``: bf16 on a CPU without bf16 matrix
    units (emulated, slower than fp32), compile where torch.compile cannot build a kernel
    (inductor needs a C compiler and Python headers), found by compiling a tiny function."""
    dropped = {}
    if "bf16" in levers and device == "cpu" and cpu_bf16_missing():
        dropped["bf16"] = cpu_bf16_missing()
    if "compile" in levers:
        try:
            probe = torch.compile(lambda x: torch.nn.functional.gelu(x) * 2.0)
            probe(torch.randn(8, 8, device=device)).sum().item()
        except Exception as e:  # inductor raises many types; the text says which
            dropped["compile"] = f"torch.compile failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    return dropped


def epoch_batches(task, cfg, workload: Workload):
    """Epoch 1 of the task's training batches, through fairseq's loader and its workers:
    the same batches on every call (seeded shuffle and masking), only those of the full
    batch size: the shuffled epoch's short last batch would time another workload. Their
    width is what fairseq-train trains on: ``tokens_per_sample`` for packed blocks; for
    complete ones the longest block of the batch, and fairseq batches blocks of similar
    size together, so that most of complete's empty slots are short rows rather than
    padding (the benchmark reports both shares)."""
    return (sample for sample in _epoch(task, cfg) if len(sample["net_input"]["src_tokens"]) == workload.batch_size)


def _epoch(task, cfg):
    itr = task.get_batch_iterator(
        dataset=task.dataset("train"), max_sentences=cfg.dataset.batch_size,
        max_positions=task.max_positions(), ignore_invalid_inputs=True,
        required_batch_size_multiple=1, seed=cfg.common.seed, epoch=1,
        num_workers=cfg.dataset.num_workers, disable_iterator_cache=True,
    )
    return itr.next_epoch_itr(shuffle=True)


def training_cfg(argv: List[str]):
    """fairseq-train's config of ``argv``, with what the plugin does inside its call_main."""
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    bf16_without_tpu(cfg)
    cpu_bf16_or_fp32(cfg)
    return cfg


def training_task(cfg):
    """The task of ``cfg`` with its epoch-1 training data loaded."""
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train", epoch=1)
    return task


class FairseqSystem:
    """cfg -> task, model, criterion -> fairseq Trainer; ``step(sample)`` is train_step."""

    def __init__(self, argv: List[str], task=None, init_state: Optional[dict] = None):
        cfg = training_cfg(argv)
        Path(cfg.checkpoint.save_dir).mkdir(parents=True, exist_ok=True)  # where crash.pt goes, as fairseq-train does
        self.cfg = cfg
        self.task = task or training_task(cfg)
        model = self.task.build_model(cfg.model)
        if init_state is not None:
            model.load_state_dict(init_state, strict=True)
        criterion = self.task.build_criterion(cfg.criterion)
        self.trainer = Trainer(cfg, self.task, model, criterion)
        # fairseq resets CUDA's peak-memory counter after every step while cuda_env is set,
        # so the peak read after the timed steps would miss the activations; HF's includes them
        self.trainer.cuda_env = None
        self.trainer.begin_epoch(1)
        self.model = model

    def step(self, sample) -> Optional[Callable[[], float]]:
        """One train_step; None when fairseq skipped it (an fp16 overflow, a recovered OOM)."""
        log = self.trainer.train_step([sample])
        if log is None:
            return None
        # fairseq logs the loss in bits per masked token; in nats, as the HF loss
        return lambda: float(log["loss"]) * math.log(2)


class HFSystem:
    """XLMRobertaForMaskedLM with SDPA, fused AdamW, bf16 autocast on GPU: a plain loop."""

    def __init__(self, workload: Workload, init_state: dict, device: str, dropout: float = 0.1):
        from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

        shape = workload.shape
        config = XLMRobertaConfig(
            vocab_size=workload.vocab, hidden_size=shape.width, num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads, intermediate_size=shape.ffn,
            max_position_embeddings=MAX_POSITIONS + 2,  # + fairseq's padding offset
            type_vocab_size=1, layer_norm_eps=1e-5,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, attn_implementation="sdpa",
        )
        model = XLMRobertaForMaskedLM(config)
        missing, unexpected = model.load_state_dict(fairseq_to_hf(init_state), strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise RuntimeError(f"HF model: missing {missing}, unexpected {unexpected}")
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
                                           weight_decay=0.01, fused=True)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def step(self, sample) -> Callable[[], float]:
        tokens = sample["net_input"]["src_tokens"].to(self.device, non_blocking=True)
        target = sample["target"].to(self.device, non_blocking=True)
        labels = target.masked_fill(target.eq(1), -100)  # fairseq pads unmasked targets
        with self.autocast:
            loss = self.model(input_ids=tokens, attention_mask=tokens.ne(1), labels=labels).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lambda: float(loss)
