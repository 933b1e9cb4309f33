"""Optimizer ``fused_adamw``: fairseq's Adam (decoupled weight decay) on the fastest kernel.

apex FusedAdam when apex imports (as fairseq's ``adam``), torch's fused AdamW on other
GPUs (fairseq's ``adam`` would fall back to its per-parameter Python loop there), and
fairseq's own Adam on CPU. All three compute AdamW.
"""
import logging

import torch
from fairseq.optim import FairseqOptimizer, register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from fairseq.optim.fused_adam import get_fused_adam_class

logger = logging.getLogger(__name__)


@register_optimizer("fused_adamw", dataclass=FairseqAdamConfig)
class FusedAdamW(FairseqAdam):
    def __init__(self, cfg: FairseqAdamConfig, params):
        params = list(params)
        on_gpu = torch.cuda.is_available() and not getattr(cfg, "tpu", False)
        if not on_gpu or get_fused_adam_class() is not None or cfg.use_old_adam:
            super().__init__(cfg, params)
            logger.info("fused_adamw: %s.%s", type(self._optimizer).__module__, type(self._optimizer).__name__)
            return
        FairseqOptimizer.__init__(self, cfg)
        if cfg.fp16_adam_stats:
            raise NotImplementedError("--fp16-adam-stats needs apex FusedAdam")
        logger.info("fused_adamw: torch.optim.AdamW(fused=True)")
        self._optimizer = torch.optim.AdamW(params, fused=True, **self.optimizer_config)
