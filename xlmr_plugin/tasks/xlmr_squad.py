"""Task ``xlmr_squad``: span-extraction QA (SQuAD v1.1, MLQA) on a pretrained XLM-R.

Reads what ``xlmr.downstream.qa_features.write_qa_split`` writes: ``dict.txt``,
``input/<split>`` (one window ``<s> question </s></s> context </s>`` per item) and
``target/<split>`` (start and end token of the answer in that window, 0 = <s> where the
window lacks it). The model gets a TokenClassificationHead of two classes (start, end);
the criterion ``xlmr_squad`` trains it. Prediction back to answer texts reads
``<split>.windows.json`` (see ``xlmr-mlqa``).
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from fairseq.data import Dictionary, SortDataset, data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from xlmr_plugin.data.token_target_dataset import token_target_dataset
from xlmr_plugin.modules.token_classification_head import TokenClassificationHead
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)


@dataclass
class XLMRSquadConfig(FairseqDataclass):
    data: str = field(default="", metadata={"help": "folder with dict.txt, input/<split> and target/<split>"})
    head_name: str = field(default="span", metadata={"help": "name of the span head in classification_heads"})
    seed: int = II("common.seed")


@register_task("xlmr_squad", dataclass=XLMRSquadConfig)
class XLMRSquadTask(FairseqTask):
    """Start / end token classification over question + context windows."""

    cfg: XLMRSquadConfig

    def __init__(self, cfg: XLMRSquadConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def setup_task(cls, cfg: XLMRSquadConfig, **kwargs) -> "XLMRSquadTask":
        path = os.path.join(cfg.data, layout.DICT)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no dict.txt in {cfg.data} (write it with xlmr-mlqa's binarization)")
        dictionary = Dictionary.load(path)
        dictionary.add_symbol("<mask>")  # as in pretraining: same embedding rows
        return cls(cfg, dictionary)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        tokens = data_utils.load_indexed_dataset(os.path.join(self.cfg.data, "input", split), self.dictionary)
        targets = data_utils.load_indexed_dataset(os.path.join(self.cfg.data, "target", split), None)
        if tokens is None or targets is None:
            raise FileNotFoundError(f"no split '{split}' in {self.cfg.data}/input and /target")
        if len(tokens) != len(targets):
            raise ValueError(f"{self.cfg.data}: {len(tokens)} windows but {len(targets)} targets in '{split}'")
        dataset = token_target_dataset(tokens, self.dictionary.pad(), targets, 0)  # B x 2: every item has two
        with data_utils.numpy_seed(self.cfg.seed + epoch):
            order = np.random.permutation(len(tokens))
        self.datasets[split] = SortDataset(dataset, sort_order=[order])
        logger.info("%s: %d windows", split, len(dataset))

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        model.classification_heads[self.cfg.head_name] = TokenClassificationHead.for_encoder(model.args, 2)  # start, end logits
        return model

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary
