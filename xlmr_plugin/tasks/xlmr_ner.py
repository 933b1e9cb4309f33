"""Task ``xlmr_ner``: named-entity recognition as token classification, the tag of
each word predicted at its first SentencePiece piece (fairseq has no token task).

DATA is what ``xlmr-ner`` binarizes (xlmr_plugin/downstream/ner_binarize.py):
``input0/`` (pieces + ``</s>``, with the pretrained dict.txt) and ``label/`` (the IOB2
tag id on each word's first piece, ``<pad>`` elsewhere, with the tag dict.txt). The
task prepends ``<s>`` to the pieces and ``<pad>`` to the tags, and registers a
``TokenClassificationHead`` on the model, so that fine-tuning adds it to a restored
pretraining checkpoint and loading a fine-tuned checkpoint rebuilds it.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
import torch
from fairseq.data import Dictionary, PrependTokenDataset, SortDataset, data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from xlmr_plugin.data.token_target_dataset import token_target_dataset
from xlmr_plugin.modules.token_classification_head import TokenClassificationHead
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)


@dataclass
class XLMRNERConfig(FairseqDataclass):
    data: str = field(
        default=MISSING,
        metadata={"help": "folder written by xlmr-ner: input0/ and label/, each with dict.txt and <split>.{bin,idx}"},
    )
    max_positions: int = field(default=512, metadata={"help": "max tokens per item, <s> and </s> included"})
    classification_head_name: str = field(
        default="ner", metadata={"help": "name of the token classification head in model.classification_heads"}
    )
    no_shuffle: bool = field(default=False, metadata={"help": "keep the training items in file order"})
    seed: int = II("common.seed")


@register_task("xlmr_ner", dataclass=XLMRNERConfig)
class XLMRNERTask(FairseqTask):
    """Token classification over the pretrained vocabulary; labels on first pieces."""

    cfg: XLMRNERConfig

    def __init__(self, cfg: XLMRNERConfig, dictionary: Dictionary, label_dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.label_dictionary = label_dictionary

    @classmethod
    def setup_task(cls, cfg: XLMRNERConfig, **kwargs) -> "XLMRNERTask":
        paths = [os.path.join(cfg.data, name, layout.DICT) for name in ("input0", "label")]
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--data {cfg.data}: no {path} (binarize the CoNLL files with xlmr-ner)")
        dictionary = Dictionary.load(paths[0])
        dictionary.add_symbol("<mask>")  # the pretrained embedding has it: same size
        labels = Dictionary.load(paths[1])
        logger.info("%d input types, %d tags: %s", len(dictionary), len(labels) - labels.nspecial, " ".join(cls._tags(labels)))
        return cls(cfg, dictionary, labels)

    @staticmethod
    def _tags(labels: Dictionary) -> List[str]:
        return labels.symbols[labels.nspecial:]

    @property
    def tags(self) -> List[str]:
        """Tag of each output class of the head (class i = label id nspecial + i)."""
        return self._tags(self.label_dictionary)

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> None:
        def load(name: str, dictionary: Dictionary):
            path = os.path.join(self.cfg.data, name, split)
            dataset = data_utils.load_indexed_dataset(path, dictionary, combine=combine)
            if dataset is None:
                raise FileNotFoundError(f"no split {split!r}: {path}.{{bin,idx}} missing")
            return dataset

        tokens = PrependTokenDataset(load("input0", self.dictionary), self.dictionary.bos())
        labels = PrependTokenDataset(load("label", self.label_dictionary), self.label_dictionary.pad())
        if not np.array_equal(tokens.sizes, labels.sizes):
            raise ValueError(f"{self.cfg.data}: input0/{split} and label/{split} have different item lengths")
        dataset = token_target_dataset(tokens, self.dictionary.pad(), labels, self.label_dictionary.pad())
        if self.cfg.no_shuffle:
            self.datasets[split] = dataset
        else:
            with data_utils.numpy_seed(self.cfg.seed):
                shuffle = np.random.permutation(len(dataset))
            self.datasets[split] = SortDataset(dataset, sort_order=[shuffle])
        logger.info("%s: %d items", split, len(dataset))

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        model.classification_heads[self.cfg.classification_head_name] = TokenClassificationHead.for_encoder(model.args, len(self.tags))
        return model

    @torch.no_grad()
    def predict_tags(self, model, split: str, batch_size: int = 64) -> List[List[str]]:
        """The tags predicted at the first pieces of each item of ``split``, in item order
        (a sentence cut into windows: its windows one after the other)."""
        if split not in self.datasets:
            self.load_dataset(split)
        dataset = self.datasets[split]
        device = next(model.parameters()).device
        pad = self.label_dictionary.pad()
        out: List[List[str]] = []
        for start in range(0, len(dataset), batch_size):
            sample = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            logits = model(
                sample["net_input"]["src_tokens"].to(device), features_only=True,
                classification_head_name=self.cfg.classification_head_name,
            )[0]  # B x T x tags
            first = sample["target"].ne(pad).to(device)  # B x T
            best = logits.argmax(-1)
            out += [[self.tags[c] for c in best[b][first[b]].tolist()] for b in range(len(best))]
        return out

    def max_positions(self) -> int:
        return self.cfg.max_positions

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.label_dictionary
