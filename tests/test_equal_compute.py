"""benchmarks/equal_compute.py's plans: what each system's calibration and run would train,
as fairseq's own parser reads the arguments (later flags win there)."""
import sys
from pathlib import Path

import pytest

from plugin_utils import REPO
from xlmr_plugin.data.update_schedule import UpdateSchedule

sys.path.insert(0, str(REPO / "benchmarks"))
import equal_compute  # noqa: E402

LEVERS = "packed,bf16,fused_adamw,no_lang_sync,mask_anneal,wsd"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "dict.txt").write_text("a 1\n")
    return tmp_path


def parsed(argv: list[str]):
    from fairseq import options

    return options.parse_args_and_arch(options.get_training_parser(), argv[1:])


def test_the_plugins_calibration_masks_at_its_runs_mean_rate(data, tmp_path):
    """The mask anneal starts at 30% and ends at 15%: calibrating at the start would plan too
    few updates for the minutes (the run then stops early), so the calibration masks at the mean."""
    args = equal_compute.parse_args([str(data), "--plan", "--plugin-levers", LEVERS])
    levers = LEVERS.split(",")
    run = parsed(equal_compute.fairseq_train("plugin", data, args, levers, 1000))
    anneal = UpdateSchedule.parse(run.mask_prob, "--mask-prob")
    assert (anneal(0), anneal(1000)) == (0.3, 0.15)
    calibration = parsed(equal_compute.calibration_argv("plugin", data, args, levers, tmp_path))
    assert calibration.max_update == args.calibration_updates and calibration.no_save
    assert float(calibration.mask_prob) == pytest.approx(anneal.mean(1000), abs=2e-3)
    assert 0.15 < float(calibration.mask_prob) < 0.3
    # stock fairseq (and a plugin without the anneal) calibrates at its constant 15%
    stock = parsed(equal_compute.calibration_argv("stock", data, args, levers, tmp_path))
    assert float(stock.mask_prob) == 0.15 and stock.task == "multilingual_masked_lm"
    plain = equal_compute.parse_args([str(data), "--plan", "--plugin-levers", "packed,bf16"])
    assert float(parsed(equal_compute.calibration_argv("plugin", data, plain, ["packed", "bf16"],
                                                       tmp_path)).mask_prob) == 0.15
