"""Fill-mask through the real fairseq-interactive CLI with the plugin's task."""
import math
from collections import defaultdict
from typing import Dict, List

import pytest

from probe_utils import probe_model, run_tool
from xlmr_plugin import XLMR

LINES = [
    "Die Stadt liegt am <mask> des Berges.",  # one mask
    "<mask> ville est <mask> la <mask>.",  # three masks, one opening the line
    "Ein Satz ohne Maske.",  # none
    "The <mask> of the city.",
]


@pytest.fixture(scope="module")
def trained(xlmr_data, tmp_path_factory):
    return probe_model(xlmr_data, tmp_path_factory)


def interactive(dest, ckpt, *extra, stdin=None) -> str:
    """stdout, then stderr (where fairseq's logging ends up)."""
    proc = run_tool("fairseq-interactive", [
        dest, "--user-dir", "xlmr_plugin", "--task", "xlmr_mlm", "--path", ckpt,
        "--bpe", "sentencepiece", "--sentencepiece-model", dest / "spm.model", "--cpu", *extra,
    ], stdin=stdin)
    return proc.stdout + proc.stderr


def records(out: str) -> Dict[str, Dict[int, List[List[str]]]]:
    """fairseq's ``X-id<TAB>fields`` lines, by kind and line id, in order."""
    found: Dict[str, Dict[int, List[List[str]]]] = defaultdict(lambda: defaultdict(list))
    for line in out.splitlines():
        head, _, rest = line.partition("\t")
        if len(head) > 2 and head[0] in "SHDP" and head[1] == "-" and head[2:].isdigit():
            found[head[0]][int(head[2:])].append(rest.split("\t"))
    return found


@pytest.fixture(scope="module")
def nbest3(trained):
    dest, ckpt = trained
    return interactive(dest, ckpt, "--nbest", "3", "--buffer-size", "4", "--batch-size", "2",
                       stdin="\n".join(LINES) + "\n")


def test_every_line_is_answered_and_the_line_without_mask_is_told(nbest3):
    found = records(nbest3)
    assert sorted(found["S"]) == [0, 1, 2, 3]
    assert "no <mask> in input line 'Ein Satz ohne Maske.': nothing to fill" in nbest3
    assert 2 not in found["H"] and 2 not in found["D"]
    assert [len(found["D"][i]) for i in (0, 1, 3)] == [3, 3, 3]
    assert [len(found["P"][i][0][0].split()) for i in (0, 1, 3)] == [1, 3, 1]  # one score per mask


def test_fillers_and_probabilities_match_the_python_api(trained, nbest3):
    dest, ckpt = trained
    xlmr = XLMR.from_pretrained(ckpt.parent, ckpt.name)
    found = records(nbest3)
    for i in (0, 1, 3):
        expected = xlmr.fill_mask(LINES[i], topk=3)
        for k, filled in enumerate(expected):
            score, pieces = found["H"][i][k]
            bits = [float(x) for x in found["P"][i][k][0].split()]
            assert bits == pytest.approx([math.log2(p) for p in filled.probs], abs=1e-3)
            assert float(score) == pytest.approx(math.log2(filled.score), abs=1e-3)
            # H- holds the line's pieces with each mask replaced by its filler; D- decodes them
            fillers = iter(f.replace(" ", "\u2581") for f in filled.fillers)
            line = [xlmr.task.source_dictionary[t] for t in xlmr.encode(LINES[i])[1:-1].tolist()]
            assert pieces.split(" ") == [next(fillers) if p == "<mask>" else p for p in line]
            assert found["D"][i][k][1] == xlmr.bpe.decode(pieces)
        assert bits_sorted([float(found["H"][i][k][0]) for k in range(3)])


def bits_sorted(scores: List[float]) -> bool:
    return all(a >= b for a, b in zip(scores, scores[1:]))


def test_input_file_gives_the_same_answers_as_stdin(trained, nbest3, tmp_path):
    dest, ckpt = trained
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    from_file = records(interactive(dest, ckpt, "--nbest", "3", "--input", path))
    batched = records(nbest3)  # --batch-size 2: padded batches, equal up to float rounding
    assert from_file["S"] == batched["S"]
    for kind in "HD":
        assert from_file[kind].keys() == batched[kind].keys()
        for i, hypos in from_file[kind].items():
            assert [text for _, text in hypos] == [text for _, text in batched[kind][i]]
            assert [float(score) for score, _ in hypos] == pytest.approx(
                [float(score) for score, _ in batched[kind][i]], abs=1e-4)


def test_default_nbest_gives_the_best_filling(trained, nbest3):
    dest, ckpt = trained
    single = records(interactive(dest, ckpt, stdin=LINES[1] + "\n"))
    assert len(single["D"][0]) == 1
    (score, text), (best_score, best_text) = single["D"][0][0], records(nbest3)["D"][1][0]
    assert text == best_text
    # nbest3 ran this line in a padded batch of two: equal up to float rounding
    assert float(score) == pytest.approx(float(best_score), abs=1e-4)
