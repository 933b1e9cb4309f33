"""Checkpoint selection by downstream score: a linear probe at every validation.

With ``--downstream-probe xnli:DIR`` the task scores the model on the probe (see
``downstream/linear_probe.py``) once per validation, on its first batch, and validation
reports ``downstream_xnli`` (accuracy, %) next to the losses. fairseq's own checkpoint
logic then keeps what the paper keeps:

    fairseq-train ... --downstream-probe xnli:probe/xnli \\
        --best-checkpoint-metric downstream_xnli --maximize-best-checkpoint-metric

The probe runs as often as validation (``--validate-interval-updates``). It also logs
``downstream_seconds``, the probe's wall time, so its cost can be read off the log.
"""
import logging
import time
from typing import Any, Dict, List

from fairseq import utils
from fairseq.logging import metrics

from xlmr_plugin.evaluation.linear_probe import ProbeSplit, load_probe_data, probe_accuracy

logger = logging.getLogger(__name__)

SCORE = "downstream_score:"
COUNT = "downstream_count:"
SECONDS = "downstream_seconds"


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
    """Mixin for a task with ``cfg.downstream_probe``, ``self.dictionary``."""

    _probe_data: Dict[str, Dict[str, ProbeSplit]] = None
    _probe_pending: bool = False

    def begin_valid_epoch(self, epoch: int, model) -> None:
        super().begin_valid_epoch(epoch, model)
        probes = parse_probes(self.cfg.downstream_probe)
        if probes and self._probe_data is None:  # loaded at first use: a moved probe never blocks loading a model
            self._probe_data = {name: load_probe_data(d, self.dictionary) for name, d in probes.items()}
        self._probe_pending = bool(probes)

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self._probe_pending:
            self._probe_pending = False
            start = time.perf_counter()
            for name, data in self._probe_data.items():
                logging_output[SCORE + name] = probe_accuracy(model, data, self.dictionary.bos(), self.dictionary.pad())
                logging_output[COUNT + name] = 1
            logging_output[SECONDS] = time.perf_counter() - start
            logger.info("downstream probe: %.1f s", logging_output[SECONDS])
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs: List[Dict[str, Any]], criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        names = sorted({k[len(COUNT):] for log in logging_outputs for k in log if k.startswith(COUNT)})
        for name in names:
            count = utils.item(sum(log.get(COUNT + name, 0) for log in logging_outputs))
            score = utils.item(sum(log.get(SCORE + name, 0) for log in logging_outputs))
            metrics.log_scalar(f"downstream_{name}", score / count, count, round=2)
        if names:
            metrics.log_scalar(SECONDS, max(log.get(SECONDS, 0) for log in logging_outputs), 1, round=1)
