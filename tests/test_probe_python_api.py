"""The ``XLMR`` Python API on CPU: encoding, fill-mask, features and sentence embeddings."""
import shutil

import pytest
import torch

from probe_utils import probe_model
from xlmr_plugin import XLMR
from xlmr_plugin.probing.fill_mask_generator import fillable
from xlmr_plugin.probing.masked_text import fill_text

TEXTS = ["Hello <mask> world", "Hello <mask>world", "<mask> und <mask> Stadt.", "東京は<mask>です",
         "a <mask> <mask> b", "Der <mask>, die Stadt.", "Ein Satz ohne Maske."]


@pytest.fixture(scope="module")
def xlmr(xlmr_data, tmp_path_factory):
    dest, ckpt = probe_model(xlmr_data, tmp_path_factory)
    return XLMR.from_pretrained(ckpt.parent, ckpt.name, data_dir=dest)


def test_encode_matches_the_hugging_face_tokenizer(xlmr, tmp_path):
    from transformers import XLMRobertaTokenizer

    shutil.copy(xlmr.cfg.bpe.sentencepiece_model, tmp_path / "sentencepiece.bpe.model")
    hf = XLMRobertaTokenizer.from_pretrained(str(tmp_path))
    assert hf.mask_token_id == xlmr.task.mask_idx == len(xlmr.task.source_dictionary) - 1
    for text in TEXTS:
        assert xlmr.encode(text).tolist() == hf(text)["input_ids"], text


def test_fill_text_puts_spaces_where_the_pieces_say():
    assert fill_text("My name is <mask>.", ["\u2581Jennifer"]) == "My name is Jennifer."  # fairseq#1306
    assert fill_text("<mask> world", ["\u2581Hello"]) == "Hello world"  # no leading space
    assert fill_text("Das Dach des Haus<mask> ist rot.", ["es"]) == "Das Dach des Hauses ist rot."
    assert fill_text("Das Dach des Haus <mask> ist rot.", ["es"]) == "Das Dach des Hauses ist rot."
    assert fill_text("a <mask> <mask> b", ["\u2581x", "\u2581y"]) == "a x y b"
    with pytest.raises(ValueError, match="2 masks .* but 1 fillers"):
        fill_text("a <mask> <mask> b", ["\u2581x"])


def test_fill_mask_gives_the_model_probabilities(xlmr):
    text = "Die Stadt liegt am <mask> des <mask>."
    filled = xlmr.fill_mask(text, topk=5)
    tokens = xlmr.encode(text)
    with torch.no_grad():
        logits, _ = xlmr.model(tokens.unsqueeze(0))
    probs = logits[0, tokens.eq(xlmr.task.mask_idx)].softmax(-1)  # 2 x V
    dictionary = xlmr.task.source_dictionary
    for k, result in enumerate(filled):
        ids = [dictionary.index(f.replace(" ", "\u2581")) for f in result.fillers]
        assert list(result.probs) == pytest.approx([probs[m, i].item() for m, i in enumerate(ids)], rel=1e-4)
        assert result.score == pytest.approx(result.probs[0] * result.probs[1], rel=1e-4)
        assert result.text == fill_text(text, [dictionary[i] for i in ids])
    # the k-th result holds each mask's k-th best allowed piece
    best = [f.probs[0] for f in filled]
    assert best == sorted(best, reverse=True) and all(i >= dictionary.nspecial for i in ids)
    allowed = fillable(dictionary, xlmr.task.mask_idx)
    assert int(allowed.sum()) == len(dictionary) - 6  # <s> <pad> </s> <unk> <mask> and a bare ▁
    assert filled[0].probs[0] == pytest.approx(probs[0, allowed].max().item(), rel=1e-4)


def test_fill_mask_batch_equals_one_by_one(xlmr):
    texts = ["The <mask> of the city.", "<mask> ville est <mask> la rivière, près de la mer."]
    batched = xlmr.fill_mask(texts, topk=3)
    for text, results in zip(texts, batched):
        single = xlmr.fill_mask(text, topk=3)
        assert [r.text for r in results] == [r.text for r in single]
        assert [r.score for r in results] == pytest.approx([r.score for r in single], rel=1e-4)
    with pytest.raises(ValueError, match="no <mask> in 'plain text'"):
        xlmr.fill_mask("plain text")


def test_features_layers_and_sentence_embeddings(xlmr):
    texts = ["Ein kleines Haus am See.", "A", "Москва — столица России, крупнейший город страны."]
    tokens = xlmr.encode_batch(texts)
    last = xlmr.extract_features(texts)
    assert last.shape == (3, tokens.size(1), 64)
    hidden = xlmr.extract_features(tokens, return_all_hiddens=True)
    assert len(hidden) == 3  # embeddings + 2 layers
    assert torch.allclose(xlmr.extract_features(texts, layer=-1), last, atol=1e-6)  # post-norm: no final norm
    assert torch.allclose(xlmr.extract_features(texts, layer=0), hidden[0], atol=1e-6)

    pooled = xlmr.sentence_embeddings(texts, batch_size=2)
    assert pooled.shape == (3, 64)
    for i, text in enumerate(texts):
        one = xlmr.extract_features(text)[0]  # T x C, no padding
        assert torch.allclose(pooled[i], one.mean(dim=0), atol=1e-5)
    layer1 = xlmr.sentence_embeddings(texts, layer=1)
    assert torch.allclose(layer1[1], xlmr.extract_features(texts[1], layer=1)[0].mean(0), atol=1e-5)
    assert (layer1 - pooled).abs().max() > 1e-3
