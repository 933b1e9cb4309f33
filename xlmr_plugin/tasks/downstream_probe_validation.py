"""Checkpoint selection by downstream score: a probe on frozen features at every validation.

With ``--downstream-probe NAME:DIR`` the task scores the model once per validation, on
its first batch, and validation reports the scores next to the losses. What DIR holds
decides the kind of probe:

- a ``sentence_prediction`` layout (``xlmr-probe-data --kind xnli``): a linear probe (see
  ``evaluation/linear_probe.py``) logs ``downstream_NAME`` (accuracy, %);
- a cross-lingual set (``xlmr-probe-data --kind gettext``, marked by its
  ``crosslingual.json``): ``downstream_NAME`` is the mean translation-retrieval accuracy
  (%), ``downstream_NAME_transfer`` the mean zero-shot transfer accuracy (%), and
  ``downstream_NAME_floor`` / ``downstream_NAME_transfer_floor`` the same for the
  architecture untrained (measured once per run, see ``evaluation/crosslingual_yardstick.py``).

fairseq's own checkpoint logic then keeps what the paper keeps:

    fairseq-train ... --downstream-probe xnli:probe/xnli \\
        --best-checkpoint-metric downstream_xnli --maximize-best-checkpoint-metric

The probe runs as often as validation (``--validate-interval-updates``). It also logs
``downstream_seconds``, the probes' wall time (the floor is measured once, at loading), so its
cost can be read off the log.
"""
import logging
import time
from typing import Any, Callable, Dict, List

from fairseq import utils
from fairseq.logging import metrics

from xlmr_plugin.evaluation.crosslingual_set import is_crosslingual_set, load_crosslingual_set
from xlmr_plugin.evaluation.crosslingual_yardstick import random_init_model, score_model, text_encoder
from xlmr_plugin.evaluation.linear_probe import load_probe_data, probe_accuracy
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

SCORE = "downstream_score:"
COUNT = "downstream_count:"
SECONDS = "downstream_seconds"

Probe = Callable[[Any], Dict[str, float]]  # model -> {metric name: score}


def parse_probes(spec: str) -> Dict[str, str]:
    """``NAME:DIR[,NAME:DIR...]`` -> {name: dir}."""
    probes = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, directory = item.partition(":")
        if not sep or not name or not directory:
            raise ValueError(f"--downstream-probe: {item!r} is not NAME:DIR")
        probes[name] = directory
    return probes


class DownstreamProbeValidation:
    """Mixin for a task with ``cfg.downstream_probe``, ``cfg.data``, ``self.dictionary``."""

    _probes: Dict[str, Probe] = None
    _probe_pending: bool = False
    _model_cfg = None  # what build_model was last given: the floor is built from it

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        self._model_cfg = cfg
        return model

    def begin_valid_epoch(self, epoch: int, model) -> None:
        super().begin_valid_epoch(epoch, model)
        probes = parse_probes(self.cfg.downstream_probe)
        if probes and self._probes is None:  # loaded at first use: a moved probe never blocks loading a model
            self._probes = {name: self._load_probe(name, directory, model) for name, directory in probes.items()}
        self._probe_pending = bool(probes)

    def _load_probe(self, name: str, directory: str, model) -> Probe:
        bos, pad = self.dictionary.bos(), self.dictionary.pad()
        if not is_crosslingual_set(directory):
            data = load_probe_data(directory, self.dictionary)
            return lambda m: {f"downstream_{name}": probe_accuracy(m, data, bos, pad)}
        data = load_crosslingual_set(directory)
        try:
            spm_model = layout.find_spm(utils.split_paths(self.cfg.data)[0])
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--downstream-probe {name}:{directory} is text, encoded with the training "
                                    f"data's SentencePiece model: {error}") from error
        if self._model_cfg is None:
            raise RuntimeError(f"--downstream-probe {name}:{directory}: the random-init floor is built from the "
                               "model config this task built the model with, and it built none")
        encode = text_encoder(spm_model, self.dictionary, model.max_positions() - 1)
        start = time.perf_counter()
        untrained = random_init_model(lambda: self.build_model(self._model_cfg), like=model)
        floor = score_model(untrained, data, encode, bos, pad)
        del untrained
        logger.info("downstream %s: random-init floor %.1f%% retrieval, %.1f%% transfer (%.1f s, once)",
                    name, floor.retrieval_mean, floor.transfer_mean, time.perf_counter() - start)

        def probe(m) -> Dict[str, float]:
            scores = score_model(m, data, encode, bos, pad)
            for measure, per_lang in (("retrieval", scores.retrieval), ("transfer", scores.transfer)):
                logger.info("downstream %s %s: %s", name, measure,
                            " ".join(f"{lang} {v:.1f}" for lang, v in per_lang.items()))
            return {f"downstream_{name}": scores.retrieval_mean, f"downstream_{name}_transfer": scores.transfer_mean,
                    f"downstream_{name}_floor": floor.retrieval_mean,
                    f"downstream_{name}_transfer_floor": floor.transfer_mean}

        return probe

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self._probe_pending:
            self._probe_pending = False
            seconds = 0.0
            for probe in self._probes.values():
                start = time.perf_counter()
                scores = probe(model)
                seconds += time.perf_counter() - start
                for metric, score in scores.items():
                    logging_output[SCORE + metric] = score
                    logging_output[COUNT + metric] = 1
            logging_output[SECONDS] = seconds
            logger.info("downstream probe: %.1f s", seconds)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs: List[Dict[str, Any]], criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        names = sorted({k[len(COUNT):] for log in logging_outputs for k in log if k.startswith(COUNT)})
        for name in names:
            count = utils.item(sum(log.get(COUNT + name, 0) for log in logging_outputs))
            score = utils.item(sum(log.get(SCORE + name, 0) for log in logging_outputs))
            metrics.log_scalar(name, score / count, count, round=2)
        if names:
            metrics.log_scalar(SECONDS, max(log.get(SECONDS, 0) for log in logging_outputs), 1, round=1)
