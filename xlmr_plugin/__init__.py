"""fairseq plugin for XLM-R pretraining: ``fairseq-train DEST --user-dir xlmr_plugin``.

Importing it registers the pretraining task ``xlmr_mlm`` and criterion
``xlmr_masked_lm``, the fine-tuning tasks and criteria ``xlmr_ner`` (token
classification) and ``xlmr_squad`` (span extraction), the model ``xlmr_roberta`` with the
``xlmr_*`` architectures, the optimizer ``fused_adamw`` and the lr scheduler
``warmup_stable_decay``, and installs the fairseq patches of ``patches/``. ``XLMR`` is the Python API for probing a trained model.

The plugin is also the toolkit's lowest layer: the facts every other part reads
(``recipes``, ``models/shapes.py``, ``storage/layout.py``, the sampling formula in
``data/language_resampling_dataset.py``) live here, and nothing here imports
``xlmr.*``. README.md's "Architecture" section draws the whole order.
"""
from xlmr_plugin import patches
from xlmr_plugin.criterions import xlmr_masked_lm, xlmr_ner as ner_loss, xlmr_squad as squad_loss  # noqa: F401
from xlmr_plugin.models import xlmr_roberta  # noqa: F401
from xlmr_plugin.optim import fused_adamw, warmup_stable_decay  # noqa: F401
from xlmr_plugin.tasks import xlmr_mlm, xlmr_ner, xlmr_squad  # noqa: F401  (tasks and criteria share names)
from xlmr_plugin.probing.hub_interface import XLMR  # noqa: F401  (the Python API: XLMR.from_pretrained)

patches.install()
