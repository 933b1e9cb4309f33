"""A downstream score cheap enough to compute at every validation of pretraining.

The paper keeps the pretraining checkpoint with the best downstream accuracy, not the
lowest perplexity. Fine-tuning a copy of the model at every validation would need a second
set of weights and optimizer state on the GPU; a linear probe on frozen features needs
neither: mean-pooled last-layer features of a fixed labelled subset, a multinomial logistic
regression fitted by L-BFGS on its ``train`` split, accuracy on its ``valid`` split.
Sentence pairs are represented as ``[u, v, |u - v|, u * v]`` (SentEval's NLI features),
single sentences as ``u``. Same data, same model: same score, whatever the batch order.

The data is a directory in fairseq's ``sentence_prediction`` layout (``input0/``,
optional ``input1/``, ``label/``, each with ``train`` and ``valid`` splits), as written by
``xlmr-probe-data`` or by fairseq-preprocess for a GLUE task, with the model's dict.txt.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary, data_utils

from xlmr_plugin.evaluation.pooling import mean_over_tokens
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid")  # the probe is fitted on the first and scored on the second


@dataclass
class ProbeSplit:
    sentences: list[list[torch.Tensor]]  # per input column, each sentence's ids ending in </s>
    labels: torch.Tensor  # N, class index


def load_probe_data(directory: str, dictionary: Dictionary) -> dict[str, ProbeSplit]:
    """Both splits of a sentence_prediction directory, checked against the model's dictionary."""
    own = os.path.join(directory, "input0", layout.DICT)
    probe_dict = Dictionary.load(own)
    n = len(probe_dict)
    if [probe_dict[i] for i in range(n)] != [dictionary[i] for i in range(n)] or len(dictionary) > n + 1:
        raise ValueError(f"{own}: not the model's dictionary; binarize the probe data with the model's dict.txt")
    labels = Dictionary.load(os.path.join(directory, "label", layout.DICT))
    columns = [c for c in ("input0", "input1") if os.path.isdir(os.path.join(directory, c))]
    data = {}
    for split in SPLITS:
        loaded = [data_utils.load_indexed_dataset(os.path.join(directory, c, split), dictionary) for c in columns]
        target = data_utils.load_indexed_dataset(os.path.join(directory, "label", split), labels)
        if target is None or any(d is None for d in loaded):
            raise FileNotFoundError(f"{directory}: no '{split}' split in {', '.join(columns)} and label")
        data[split] = ProbeSplit(
            [[d[i] for i in range(len(d))] for d in loaded],
            torch.tensor([int(target[i][0]) - labels.nspecial for i in range(len(target))]),
        )
    return data


def pooled_features(model, sentences: list[torch.Tensor], bos: int, pad: int, batch_size: int = 64) -> torch.Tensor:
    """N x C mean of the last layer over each ``<s> sentence </s>``; padding left out."""
    device = next(model.parameters()).device
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))  # little padding per batch
    chunks = []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [sentences[i] for i in order[start : start + batch_size]]
            tokens = data_utils.collate_tokens([torch.cat([s.new_tensor([bos]), s]) for s in batch], pad).to(device)
            features, _ = model(tokens, features_only=True)  # B x T x C
            chunks.append(mean_over_tokens(features, tokens, pad).float().cpu())
    pooled = torch.cat(chunks)
    pooled[torch.tensor(order)] = pooled.clone()  # back to the data's order
    return pooled


def pair_features(columns: list[torch.Tensor]) -> torch.Tensor:
    if len(columns) == 1:
        return columns[0]
    u, v = columns
    return torch.cat([u, v, (u - v).abs(), u * v], dim=1)


def fit_and_score(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                  classes: int, l2: float = 1e-3, steps: int = 100) -> float:
    """Accuracy (%) on the test split of an L2-regularised logistic regression fitted on train."""
    return accuracy(fit_classifier(train_x, train_y, classes, l2, steps), test_x, test_y)


def accuracy(classify: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (%) of ``classify`` (features -> class indices) on ``x``, ``y``."""
    return 100.0 * classify(x).eq(y).float().mean().item()


def fit_classifier(train_x: torch.Tensor, train_y: torch.Tensor, classes: int, l2: float = 1e-3,
                   steps: int = 100) -> Callable[[torch.Tensor], torch.Tensor]:
    """An L2-regularised logistic regression fitted on train: features -> class indices.
    Fitted once, it scores any number of test sets (the languages of a transfer probe)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x = (train_x - mean) / std
    weight = torch.zeros(train_x.size(1), classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = F.cross_entropy(train_x @ weight + bias, train_y) + l2 * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():  # fairseq validates under no_grad
        optimizer.step(loss)
    weight, bias = weight.detach(), bias.detach()
    return lambda x: (((x - mean) / std) @ weight + bias).argmax(1)


def probe_accuracy(model, data: dict[str, ProbeSplit], bos: int, pad: int, classes: Optional[int] = None) -> float:
    """The probe's accuracy (%) for ``model`` in its current state; the model is left as it was."""
    was_training = model.training
    model.eval()
    try:
        x = {s: pair_features([pooled_features(model, col, bos, pad) for col in data[s].sentences]) for s in SPLITS}
    finally:
        model.train(was_training)
    classes = classes or int(max(data["train"].labels.max(), data["valid"].labels.max())) + 1
    return fit_and_score(x["train"], data["train"].labels, x["valid"], data["valid"].labels, classes)
