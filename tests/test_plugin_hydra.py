"""The shipped YAML configs, through fairseq-hydra-train."""
import pytest
from omegaconf import OmegaConf

from plugin_utils import PLUGIN, REPO, fairseq_cli, json_records, small_dest

CONFIGS = REPO / "config" / "pretraining"


@pytest.mark.parametrize("name,arch,batch", [("base", "xlmr_base", 8192), ("large", "xlmr_large", 8192)])
def test_configs_describe_the_paper_setup(name, arch, batch):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    assert cfg.model._name == arch and cfg.task._name == "xlmr_mlm"
    assert cfg.task.tokens_per_sample == 512 and cfg.task.multilang_sampling_alpha == 0.3
    gpus = 64 if name == "base" else 128
    assert cfg.dataset.batch_size * cfg.optimization.update_freq[0] * gpus == batch


def test_hydra_train_runs_base_config_with_a_tiny_model(xlmr_data, tmp_path):
    data = small_dest(xlmr_data, tmp_path / "data", {"el": None, "ja": 50})
    log = fairseq_cli("fairseq-hydra-train", [
        "--config-dir", CONFIGS, "--config-name", "base",
        f"task.data={data}", f"common.user_dir={PLUGIN}", "model._name=xlmr_tiny",
        "common.bf16=false", "common.cpu=true", "common.log_interval=1",
        "task.tokens_per_sample=64", "dataset.batch_size=8", "optimization.update_freq=[1]",
        "optimization.max_update=4", "dataset.validate_interval_updates=4",
        f"checkpoint.save_dir={tmp_path / 'ckpt'}", "checkpoint.save_interval_updates=4",
    ], cwd=tmp_path)
    train, valid = json_records(log, "train_inner"), json_records(log, "valid")
    assert [r["num_updates"] for r in train] == [1, 2, 3, 4]
    assert {"valid_loss_el", "valid_loss_ja", "valid_loss_lang_mean"} <= set(valid[-1])
    assert (tmp_path / "ckpt" / "checkpoint_best.pt").exists()
