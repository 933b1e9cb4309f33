"""xlmr-eval-ppl through its console script: against a hand computation, and reproducible."""
import json
import math

import pytest
import torch
from fairseq.data import MaskTokensDataset
from fairseq.data.list_dataset import ListDataset

from probe_utils import probe_model, run_tool
from xlmr_plugin import XLMR

RAW = {
    "de": ["Die Stadt liegt an einem großen Fluss.", "", "Im Sommer ist es dort sehr warm und trocken."],
    "fr": ["La ville est connue pour son port.", "Elle compte environ deux cent mille habitants."],
}


@pytest.fixture(scope="module")
def trained(xlmr_data, tmp_path_factory):
    return probe_model(xlmr_data, tmp_path_factory)


def by_hand(xlmr: XLMR, lines, seed: float, mask_prob: float):
    """Summed NLL in nats and masked-token count, with a full forward pass per line."""
    dictionary = xlmr.task.source_dictionary
    lines = [xlmr.encode(line) for line in lines if line]  # <s> ... </s>
    # the masked positions: fairseq's MaskTokensDataset, every chosen token replaced
    masker = MaskTokensDataset(ListDataset(lines, [len(t) for t in lines]), dictionary, pad_idx=dictionary.pad(),
                               mask_idx=xlmr.task.mask_idx, seed=seed, mask_prob=mask_prob,
                               leave_unmasked_prob=0.0, random_token_prob=0.0)
    nll, count = 0.0, 0
    for i, tokens in enumerate(lines):
        masked = masker[i]
        positions = (masked == xlmr.task.mask_idx).nonzero().flatten().tolist()
        with torch.no_grad():
            logits, _ = xlmr.model(masked.unsqueeze(0))
        log_probs = torch.log_softmax(logits[0].double(), dim=-1)
        nll -= sum(log_probs[p, tokens[p]].item() for p in positions)
        count += len(positions)
    return nll, count


def test_perplexity_equals_a_hand_computation(trained, tmp_path):
    dest, ckpt = trained
    for lang, lines in RAW.items():
        (tmp_path / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_tool("xlmr-eval-ppl", [ckpt, tmp_path, "--seed", "7", "--mask-prob", "0.3", "--json", tmp_path / "ppl.json"])
    table = json.loads((tmp_path / "ppl.json").read_text())
    assert list(table) == ["de", "fr", "all"]

    xlmr = XLMR.from_pretrained(ckpt.parent, ckpt.name)
    sums = {lang: by_hand(xlmr, lines, 7, 0.3) for lang, lines in RAW.items()}
    for lang, (nll, count) in sums.items():
        assert table[lang]["lines"] == 2 and table[lang]["masked_tokens"] == count > 0
        assert table[lang]["loss"] == pytest.approx(nll / count / math.log(2), abs=1e-4)
        assert table[lang]["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-4)
        assert f"{table[lang]['ppl']:.2f}" in out.stdout
    total_nll, total = sum(s[0] for s in sums.values()), sum(s[1] for s in sums.values())
    assert table["all"]["ppl"] == pytest.approx(math.exp(total_nll / total), rel=1e-4)


def test_binarized_valid_split_is_deterministic_per_seed(trained, tmp_path):
    dest, ckpt = trained
    args = [ckpt, dest, "--langs", "el,ja", "--max-lines", "20", "--json", "-"]
    first = run_tool("xlmr-eval-ppl", [*args, "--seed", "1"]).stdout
    again = run_tool("xlmr-eval-ppl", [*args, "--seed", "1"]).stdout
    other = run_tool("xlmr-eval-ppl", [*args, "--seed", "2"]).stdout
    assert first == again
    table = json.loads(first[first.index("{"):])
    assert [table[lang]["lines"] for lang in ("el", "ja", "all")] == [20, 20, 40]
    # a briefly trained tiny model: far better than chance (2001 symbols), far from good
    assert 50 < table["all"]["ppl"] < 2001
    assert json.loads(other[other.index("{"):])["all"]["loss"] != table["all"]["loss"]  # other positions


def test_bad_arguments_name_the_problem(trained, tmp_path):
    dest, ckpt = trained
    proc = run_tool("xlmr-eval-ppl", [ckpt, dest, "--mask-prob", "1.5"], check=False)
    assert proc.returncode == 2 and "--mask-prob must be in (0, 1), got 1.5" in proc.stderr
    proc = run_tool("xlmr-eval-ppl", [ckpt, tmp_path], check=False)
    assert proc.returncode != 0 and "no <lang>/valid.idx shards and no <lang>.txt files" in proc.stderr


def test_data_of_another_vocabulary_is_refused(trained, tmp_path):
    dest, ckpt = trained
    other = tmp_path / "other"
    (other / "el").mkdir(parents=True)
    for name in ("valid.bin", "valid.idx"):
        (other / "el" / name).write_bytes((dest / "el" / name).read_bytes())
    pieces = (dest / "dict.txt").read_text(encoding="utf-8").splitlines()
    (other / "dict.txt").write_text("\n".join(pieces[1:] + pieces[:1]) + "\n", encoding="utf-8")  # ids shifted
    proc = run_tool("xlmr-eval-ppl", [ckpt, other, "--langs", "el"], check=False)
    assert proc.returncode == 2 and "xlmr-eval-ppl: error: " in proc.stderr and "is not the model's dictionary" in proc.stderr
