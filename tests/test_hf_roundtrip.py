"""fairseq -> Hugging Face -> fairseq: the exported XLMRobertaForMaskedLM gives the
fairseq model's logits on real sentences, its tokenizer the same ids, and the
directory comes back as a release-layout checkpoint the plugin trains from."""
import shutil

import numpy as np
import pytest
import torch

import xlmr_plugin  # noqa: F401  (checkpoint loading under torch >= 2.6)
from conftest import CORPUS
from plugin_utils import PLUGIN, TINY, fairseq_cli, json_records, small_dest
from xlmr_plugin.interop.hf_cli import export_hf, import_hf
from xlmr_plugin.interop.hf_conversion import FS, ConversionError, check_xlmr_dictionary, fairseq_to_hf

transformers = pytest.importorskip("transformers")
LANGS = ["de", "el", "en", "ja", "ru"]


def sentences() -> list:
    """The 40th paragraph of each language's file, cut to 300 characters."""
    out = []
    for lang in LANGS:
        with open(CORPUS / f"{lang}.txt", encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()][:40]
        out.append(lines[-1][:300])
    return out


@pytest.fixture(scope="module")
def trained(xlmr_data, tmp_path_factory):
    """A tiny model trained for 30 updates on real text, and its data."""
    data = small_dest(xlmr_data, tmp_path_factory.mktemp("data"), {"el": None, "ja": 200, "de": 200})
    save = tmp_path_factory.mktemp("ckpt")
    fairseq_cli("fairseq-train", [data, *TINY, "--batch-size", "16", "--max-update", "30",
                                  "--disable-validation", "--save-dir", save])
    return save / "checkpoint_last.pt", data


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    checkpoint, data = trained
    out = tmp_path_factory.mktemp("hf") / "model"
    export_hf(checkpoint, out, data)
    return out


@pytest.fixture(scope="module")
def hub(trained):
    from fairseq.models.roberta import XLMRModel
    checkpoint, data = trained
    return XLMRModel.from_pretrained(str(checkpoint.parent), checkpoint.name, data_name_or_path=str(data),
                                     user_dir=str(PLUGIN), sentencepiece_model=str(data / "spm.model")).eval()


def test_hf_logits_match_fairseq_on_real_sentences(exported, hub):
    from fairseq.data.data_utils import collate_tokens
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(exported).eval()
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(exported)
    texts = sentences()
    ids = [hub.encode(t) for t in texts]
    assert [i.tolist() for i in ids] == [tokenizer(t)["input_ids"] for t in texts]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    tokens = collate_tokens(ids, pad_idx=hub.task.source_dictionary.pad())
    assert torch.equal(tokens, batch["input_ids"])  # one padded batch of five languages
    with torch.no_grad():
        ours, _ = hub.model(tokens)
        theirs = hf(**batch).logits
    real = batch["attention_mask"].bool()
    assert ours.shape == theirs.shape and (ours - theirs)[real].abs().max().item() < 1e-4


def test_hf_tokenizer_has_the_dictionarys_mask_id(exported, hub):
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(exported)
    dictionary = hub.task.source_dictionary
    ids = tokenizer("Das <mask> ist klein.")["input_ids"]
    assert dictionary.index("<mask>") == len(dictionary) - 1 == tokenizer.mask_token_id
    assert ids.count(tokenizer.mask_token_id) == 1 and ids[0] == 0 and ids[-1] == 2


def test_the_way_back_gives_the_same_weights_and_vocabulary(trained, exported, tmp_path):
    checkpoint, data = trained
    import_hf(exported, tmp_path / "release")
    original = torch.load(checkpoint)["model"]
    back = torch.load(tmp_path / "release" / "model.pt")["model"]
    assert set(original) - set(back) == {FS + "version"} and set(back) <= set(original)
    assert all(torch.equal(original[k], back[k]) for k in back)
    assert (tmp_path / "release" / "dict.txt").read_bytes() == (data / "dict.txt").read_bytes()
    assert (tmp_path / "release" / "sentencepiece.bpe.model").read_bytes() == (data / "spm.model").read_bytes()


def test_an_imported_directory_continues_pretraining(trained, exported, tmp_path):
    _, data = trained
    import_hf(exported, tmp_path / "release")
    args = [data, *TINY, "--batch-size", "16", "--max-update", "2", "--disable-validation", "--no-save",
            "--save-dir", tmp_path / "ckpt"]
    resumed = fairseq_cli("fairseq-train", [*args, "--restore-file", tmp_path / "release" / "model.pt",
                                            "--reset-optimizer", "--reset-dataloader", "--reset-meters",
                                            "--reset-lr-scheduler"])
    fresh = fairseq_cli("fairseq-train", args)
    assert f"Loaded checkpoint {tmp_path / 'release' / 'model.pt'}" in resumed
    first = [json_records(log, "train_inner")[0]["loss"] for log in (resumed, fresh)]
    assert first[0] < first[1] - 0.5, first  # the imported weights are the trained ones


def test_a_hub_directory_without_dict_txt_gets_one_from_the_sentencepiece_model(trained, exported, tmp_path):
    _, data = trained
    hub_dir = tmp_path / "hub"
    shutil.copytree(exported, hub_dir)
    (hub_dir / "dict.txt").unlink()
    import_hf(hub_dir, tmp_path / "release")
    lines = (tmp_path / "release" / "dict.txt").read_text(encoding="utf-8").splitlines()
    pieces = [line.rsplit(" ", 1)[0] for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines()]
    assert [line.rsplit(" ", 1)[0] for line in lines] == pieces
    assert {line.rsplit(" ", 1)[1] for line in lines} == {"1"}


def test_what_cannot_be_converted_says_why(trained, tmp_path):
    checkpoint, data = trained
    state = torch.load(checkpoint)["model"]
    state[FS + "layer_norm.weight"] = torch.ones(64)
    with pytest.raises(ConversionError, match="pre-norm"):
        fairseq_to_hf(state)
    shuffled = tmp_path / "dict.txt"
    lines = (data / "dict.txt").read_text(encoding="utf-8").splitlines()
    shuffled.write_text("\n".join(lines[1:] + lines[:1]) + "\n", encoding="utf-8")
    with pytest.raises(ConversionError, match="id order"):
        check_xlmr_dictionary(data / "spm.model", shuffled, len(lines) + 5)
    vocab = np.array(state[FS + "embed_tokens.weight"].shape)[0]
    with pytest.raises(ConversionError, match="embeddings"):
        check_xlmr_dictionary(data / "spm.model", data / "dict.txt", int(vocab) + 1)
