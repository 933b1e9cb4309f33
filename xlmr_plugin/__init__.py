"""fairseq plugin for XLM-R pretraining: ``fairseq-train DEST --user-dir xlmr_plugin``.

Importing it registers the pretraining task ``xlmr_mlm`` and criterion
``xlmr_masked_lm``, the fine-tuning tasks and criteria ``xlmr_ner`` (token
classification) and ``xlmr_squad`` (span extraction), the model ``xlmr_sdpa`` with the
``xlmr_*`` architectures and the optimizer ``fused_adamw``; it also lets torch >= 2.6 load fairseq checkpoints, lets ``--bf16``
train on GPUs and ends fairseq's prefetch thread cleanly at exit. ``XLMR`` is the
Python API for probing a trained model.
"""
from xlmr_plugin.patches import bf16_on_gpu, checkpoint_safe_globals, clean_exit
from xlmr_plugin.criterions import xlmr_masked_lm, xlmr_ner as ner_loss, xlmr_squad as squad_loss  # noqa: F401
from xlmr_plugin.models import xlmr_sdpa  # noqa: F401
from xlmr_plugin.optim import fused_adamw  # noqa: F401
from xlmr_plugin.tasks import xlmr_mlm, xlmr_ner, xlmr_squad  # noqa: F401  (tasks and criteria share names)
from xlmr_plugin.probing.hub_interface import XLMR  # noqa: F401  (the Python API: XLMR.from_pretrained)

checkpoint_safe_globals.allow_fairseq_checkpoints()
bf16_on_gpu.install()
clean_exit.install()
