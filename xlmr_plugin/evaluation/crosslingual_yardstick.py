"""Two cross-lingual measures on a model's frozen sentence features, beside the floor of the
same architecture untrained.

- **retrieval** (XTREME's Tatoeba task): in each language, the share of translations
  whose nearest English sentence (cosine) among that language's pairs is their own
  source. Each side is centered first (its mean over the set subtracted): mean-pooled
  features of one language share a large common component, which otherwise decides the
  cosine more than the content does (Libovický et al., 2020, "On the Language Neutrality
  of Pre-trained Multilingual Representations"). XTREME's own Tatoeba script does not
  center and searches from English to the translations; centering is what a yardstick for
  small, young models needs, and the direction is the one that asks "is this translation
  understood as that English sentence".
- **zero-shot transfer**: a logistic regression fitted on English sentences' features to
  predict their domain, scored on the translations of held-out English sentences.

Features are the mean of the last layer over ``<s> sentence </s>`` (``pooled_features``,
the same pooling as the sentence-prediction probe and ``XLMR.sentence_embeddings``). An
untrained model already retrieves a share of translations through the tokens they share
with English (names, numbers, option names), so every figure comes with the same measure
for a randomly initialised model of the same architecture and vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import sentencepiece
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

from xlmr_plugin.evaluation.crosslingual_set import ENGLISH, CrosslingualSet
from xlmr_plugin.evaluation.linear_probe import accuracy, fit_classifier, pooled_features

FLOOR_SEED = 1  # the random initialisation the floor is measured with, whoever measures it

Featurize = Callable[[Sequence[str]], torch.Tensor]  # N texts -> N x C features


@dataclass
class YardstickScores:
    """Per-language accuracies (%); the means are over the translated languages only."""

    retrieval: Dict[str, float] = field(default_factory=dict)
    transfer: Dict[str, float] = field(default_factory=dict)  # English (in-language) included

    @property
    def retrieval_mean(self) -> float:
        return sum(self.retrieval.values()) / max(len(self.retrieval), 1)

    @property
    def transfer_mean(self) -> float:
        scores = [v for lang, v in self.transfer.items() if lang != ENGLISH]
        return sum(scores) / max(len(scores), 1)


def retrieval_accuracy(queries: torch.Tensor, keys: torch.Tensor) -> float:
    """% of rows i of ``queries`` (N x C) whose most cosine-similar row of ``keys`` (N x C) is
    row i, each side centered on its own mean."""
    queries = F.normalize(queries - queries.mean(0), dim=1)
    keys = F.normalize(keys - keys.mean(0), dim=1)
    nearest = (queries @ keys.T).argmax(1)
    return 100.0 * nearest.eq(torch.arange(len(queries))).float().mean().item()


def score_features(featurize: Featurize, data: CrosslingualSet) -> YardstickScores:
    """Both measures for one featurizer; every distinct text is featurized once."""
    texts = sorted({t for pairs in [*data.retrieval.values(), *data.transfer_test.values(), data.transfer_train]
                    for p in pairs for t in (p.english, p.translation)})
    features = featurize(texts)
    row = {text: i for i, text in enumerate(texts)}

    def rows(strings: List[str]) -> torch.Tensor:
        return features[[row[s] for s in strings]]

    scores = YardstickScores()
    for lang, pairs in data.retrieval.items():
        scores.retrieval[lang] = retrieval_accuracy(rows([p.translation for p in pairs]), rows([p.english for p in pairs]))
    label = {domain: i for i, domain in enumerate(data.domains)}
    train = data.transfer_train
    classify = fit_classifier(rows([p.english for p in train]), torch.tensor([label[p.domain] for p in train]),
                              len(data.domains))
    for lang, pairs in data.transfer_test.items():
        scores.transfer[lang] = accuracy(classify, rows([p.translation for p in pairs]),
                                         torch.tensor([label[p.domain] for p in pairs]))
    return scores


def text_encoder(spm_model: Path, dictionary: Dictionary, max_tokens: int) -> Callable[[str], torch.Tensor]:
    """Text -> ids ending in ``</s>`` as xlmr-prepare binarizes a line (SentencePiece pieces
    looked up in ``dictionary``), cut to ``max_tokens`` with ``</s>`` kept."""
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))

    def encode(text: str) -> torch.Tensor:
        pieces = " ".join(processor.encode(text, out_type=str))
        ids = dictionary.encode_line(pieces, append_eos=True, add_if_not_exist=False).long()
        return ids if len(ids) <= max_tokens else torch.cat([ids[: max_tokens - 1], ids[-1:]])

    return encode


def score_model(model, data: CrosslingualSet, encode: Callable[[str], torch.Tensor], bos: int,
                pad: int) -> YardstickScores:
    """Both measures for ``model`` in its current state; the model is left as it was."""
    was_training = model.training
    model.eval()
    try:
        return score_features(lambda texts: pooled_features(model, [encode(t) for t in texts], bos, pad), data)
    finally:
        model.train(was_training)


def random_init_model(build: Callable[[], torch.nn.Module], like: torch.nn.Module) -> torch.nn.Module:
    """``build()`` under ``FLOOR_SEED``, on ``like``'s device, in eval mode, without touching
    the random state of the run that asks (training goes on as if it had not been built)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FLOOR_SEED)
        model = build()
    return model.to(next(like.parameters()).device).eval()
