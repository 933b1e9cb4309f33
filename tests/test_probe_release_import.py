"""A directory in the official XLM-R release layout: loads into the plugin's architecture,
answers fill-mask, and continues pretraining with fairseq-train --restore-file."""
import pytest
import torch

from plugin_utils import TINY, fairseq_cli, json_records
from probe_utils import make_release_dir, probe_model, run_tool
from xlmr_plugin import XLMR
from xlmr_plugin.models.shapes import SHAPES
from xlmr_plugin.models.xlmr_roberta import XLMRRobertaModel
from xlmr_plugin.interop.release_import import plugin_architecture


@pytest.fixture(scope="module")
def trained(xlmr_data, tmp_path_factory):
    return probe_model(xlmr_data, tmp_path_factory)


@pytest.fixture(scope="module")
def release(trained, tmp_path_factory):
    dest, ckpt = trained
    return make_release_dir(ckpt, dest, tmp_path_factory.mktemp("xlmr.tiny"))


def test_release_loads_into_plugin_architecture_with_the_same_outputs(trained, release):
    state = torch.load(release / "model.pt")
    assert state["args"].arch == "roberta_base" and "cfg" not in state
    assert any(key.startswith("decoder.sentence_encoder.emb_layer_norm") for key in state["model"])

    imported = XLMR.from_pretrained(release)  # model.pt, dict.txt, sentencepiece.bpe.model
    assert isinstance(imported.model, XLMRRobertaModel) and imported.cfg.model.arch == "xlmr_tiny"
    dest, ckpt = trained
    original = XLMR.from_pretrained(ckpt.parent, ckpt.name)
    text = "Der Fluss <mask> durch die Stadt."
    assert imported.encode(text).tolist() == original.encode(text).tolist()
    with torch.no_grad():
        a, _ = imported.model(imported.encode(text).unsqueeze(0))
        b, _ = original.model(original.encode(text).unsqueeze(0))
    assert (a - b).abs().max().item() < 1e-5

    filled = imported.fill_mask(text, topk=4)
    assert [f.text for f in filled] == [f.text for f in original.fill_mask(text, topk=4)]
    assert len(filled) == 4 and filled[0].score >= filled[-1].score > 0


def test_release_probes_through_fairseq_interactive(release):
    # the release directory itself is the data directory: its dict.txt is all probing needs
    out = run_tool("fairseq-interactive", [
        release, "--user-dir", "xlmr_plugin", "--task", "xlmr_mlm", "--path", release / "model.pt",
        "--bpe", "sentencepiece", "--sentencepiece-model", release / "sentencepiece.bpe.model", "--cpu",
        "--nbest", "2",
    ], stdin="La ville <mask> la rivière.\n").stdout
    assert len([line for line in out.splitlines() if line.startswith("D-0\t")]) == 2


def test_a_shape_of_no_architecture_loads_with_its_own_sizes(trained, release, tmp_path):
    cfg = XLMR.from_pretrained(release).cfg.model
    cfg.encoder_layers = 3
    assert plugin_architecture(cfg) == "xlmr_base"
    cfg.encoder_normalize_before = True
    assert plugin_architecture(cfg) == "xlmr_xl"
    assert plugin_architecture(type("Cfg", (), dict(
        encoder_layers=12, encoder_embed_dim=768, encoder_attention_heads=12, encoder_ffn_embed_dim=3072))) == "xlmr_base"
    assert len(SHAPES) == len(set(SHAPES.values())), "two archs of one shape would make the import ambiguous"
    # a real checkpoint of stock roberta_base at sizes no xlmr_* architecture has
    dest, _ = trained
    fairseq_cli("fairseq-train", [
        dest, "--task", "multilingual_masked_lm", "--arch", "roberta_base", "--criterion", "masked_lm",
        "--encoder-layers", "1", "--encoder-embed-dim", "32", "--encoder-attention-heads", "2",
        "--encoder-ffn-embed-dim", "64", "--optimizer", "adam", "--lr", "1e-3", "--tokens-per-sample", "64",
        "--batch-size", "8", "--max-update", "2", "--disable-validation", "--cpu", "--save-dir", tmp_path,
    ])
    model = XLMR.from_pretrained(tmp_path, "checkpoint_last.pt", data_dir=dest)
    assert model.cfg.model.arch == "xlmr_base"
    assert len(model.model.encoder.sentence_encoder.layers) == 1
    assert model.model.encoder.sentence_encoder.embed_tokens.weight.shape[1] == 32


def test_release_continues_pretraining_with_restore_file(trained, release, tmp_path):
    dest, _ = trained
    common = [dest, *TINY, "--batch-size", "16", "--max-update", "3", "--disable-validation", "--no-save"]
    resumed = fairseq_cli("fairseq-train", [
        *common, "--restore-file", release / "model.pt", "--reset-optimizer", "--reset-dataloader",
        "--reset-meters", "--reset-lr-scheduler", "--save-dir", tmp_path / "a",
    ])
    scratch = fairseq_cli("fairseq-train", [*common, "--save-dir", tmp_path / "b"])
    assert "Loaded checkpoint" in resumed
    first_resumed = json_records(resumed, "train_inner")[0]
    first_scratch = json_records(scratch, "train_inner")[0]
    assert first_resumed["num_updates"] == 1
    # the released weights are used: 60 updates of training are worth more than a bit
    assert first_resumed["loss"] < first_scratch["loss"] - 0.5, (first_resumed["loss"], first_scratch["loss"])
